// Command etcd runs a single-member embedded etcd bound to loopback, for the
// local system and the end-to-end tests. It is the etcd version that
// k8s.io/apiserver v0.37.2 itself requires.
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	dataDir := flag.String("data-dir", "", "directory for etcd's data (required)")
	clientURL := flag.String("listen-client-url", "http://127.0.0.1:2379", "client URL to listen on")
	peerURL := flag.String("listen-peer-url", "http://127.0.0.1:2380", "peer URL to listen on")
	certFile := flag.String("cert-file", "", "serving (and peer) certificate for https URLs")
	keyFile := flag.String("key-file", "", "key of --cert-file")
	caFile := flag.String("trusted-ca-file", "", "CA of the client (and peer) certificates every client must present; none asked when empty")
	flag.Parse()
	if *dataDir == "" {
		log.Fatal("--data-dir is required")
	}
	cu, err := url.Parse(*clientURL)
	if err != nil {
		log.Fatalf("parse --listen-client-url: %v", err)
	}
	pu, err := url.Parse(*peerURL)
	if err != nil {
		log.Fatalf("parse --listen-peer-url: %v", err)
	}

	cfg := embed.NewConfig()
	cfg.Name = "flowscope-local"
	cfg.Dir = *dataDir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	if *certFile != "" {
		// Client certificates, so that no other local user can read or
		// rewrite the cluster, RBAC included, through the port.
		tls := transport.TLSInfo{CertFile: *certFile, KeyFile: *keyFile, TrustedCAFile: *caFile, ClientCertAuth: *caFile != ""}
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = tls, tls
	}
	// A local development store: losing the last writes on a host crash is
	// acceptable, waiting for fsync on every write is not.
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "warn"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("start etcd: %v", err)
	}
	defer e.Close()
	<-e.Server.ReadyNotify()
	log.Printf("etcd ready on %s", cu)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
	case err := <-e.Err():
		log.Fatalf("etcd: %v", err)
	}
}
