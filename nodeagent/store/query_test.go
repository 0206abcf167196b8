/*
Copyright The Flowscope Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package store

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

// spec describes a made-up flow; zero fields are left out of it.
type spec struct {
	ns, srcNS, srcPod, dstNS, dstPod string
	srcWorkload, dstWorkload         string
	proto                            v1alpha1.Protocol
	sport, dport                     int32
	verdict                          v1alpha1.Verdict
	dir                              v1alpha1.TrafficDirection
	l7                               v1alpha1.L7Type
	app                              string
}

func (s spec) flow(t time.Time, rv uint64) *v1alpha1.Flow {
	f := &v1alpha1.Flow{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "node-a." + strconv.FormatUint(rv, 10),
			ResourceVersion: strconv.FormatUint(rv, 10)},
		Time: metav1.NewMicroTime(t), NodeName: "node-a", Verdict: s.verdict, TrafficDirection: s.dir,
	}
	if s.app != "" {
		f.Labels = map[string]string{"app": s.app}
	}
	if s.proto != "" {
		f.L4 = &v1alpha1.Layer4{Protocol: s.proto, SourcePort: s.sport, DestinationPort: s.dport}
	}
	if s.l7 != "" {
		f.L7 = &v1alpha1.Layer7{Type: s.l7}
	}
	ep := func(ns, pod, wl string) *v1alpha1.Endpoint {
		if ns == "" && pod == "" && wl == "" {
			return nil
		}
		e := &v1alpha1.Endpoint{Namespace: ns, PodName: pod, IP: "10.0.0.1"}
		if wl != "" {
			e.Workloads = []v1alpha1.Workload{{Kind: "ReplicaSet", Name: wl + "-abc"}, {Kind: "Deployment", Name: wl}}
		}
		return e
	}
	f.Source = ep(s.srcNS, s.srcPod, s.srcWorkload)
	f.Destination = ep(s.dstNS, s.dstPod, s.dstWorkload)
	return f
}

func openTest(t *testing.T, o Options) *Store {
	t.Helper()
	if o.Retention == 0 {
		o.Retention = time.Hour
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// reference is what Query must return: the time index through the matcher.
func reference(t *testing.T, s *Store, q TimeScan, f flowfilter.Filter, limit int) []uint64 {
	t.Helper()
	m, err := f.Compile()
	if err != nil {
		t.Fatal(err)
	}
	var rvs []uint64
	err = s.ScanTime(q, func(r Record) bool {
		if !m.Matches(r.Flow) {
			return true
		}
		rvs = append(rvs, r.RV)
		return limit <= 0 || len(rvs) < limit
	})
	if err != nil {
		t.Fatal(err)
	}
	return rvs
}

func query(t *testing.T, s *Store, q TimeScan, f flowfilter.Filter, limit int) ([]Record, Plan) {
	t.Helper()
	var recs []Record
	p, err := s.Query(q, f, func(r Record) bool {
		recs = append(recs, r)
		return limit <= 0 || len(recs) < limit
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs, p
}

func rvsOf(recs []Record) []uint64 {
	rvs := make([]uint64, len(recs))
	for i, r := range recs {
		rvs[i] = r.RV
	}
	return rvs
}

func TestIndexValuesMatchFieldSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		f := randomSpec(rng).flow(time.Unix(1, 0), uint64(i+1))
		fs := v1alpha1.FieldSet(f)
		v := indexValues(f)
		for field := indexField(1); field <= numIndexes; field++ {
			want := fs[indexLabels[field]]
			switch field {
			case idxSourcePod, idxDestinationPod:
				ep := strings.TrimSuffix(indexLabels[field], ".podName")
				if want != "" {
					want = podValue(fs[ep+".namespace"], want)
				}
			}
			if v[field] != want {
				t.Fatalf("flow %d: index %s is %q, field set says %q", i, field, v[field], want)
			}
		}
	}
}

// TestPlan: each index is chosen where it is the most selective.
func TestPlan(t *testing.T) {
	s := openTest(t, Options{})
	base := time.Now().Add(-time.Minute)
	rv0 := uint64(time.Now().UnixMicro())
	var recs []Record
	for i := range 1000 {
		sp := spec{ns: "big", srcNS: "big", srcPod: fmt.Sprintf("client-%d", i%5), srcWorkload: "client",
			dstNS: "big", dstPod: "web", dstWorkload: "web", proto: v1alpha1.ProtocolTCP, sport: 40000, dport: 8080,
			verdict: v1alpha1.VerdictForwarded, dir: v1alpha1.TrafficDirectionEgress}
		if i%10 == 0 {
			sp.ns = "small"
		}
		if i%50 == 0 {
			sp.dstNS, sp.dstPod, sp.dstWorkload = "small", "server", "server"
		}
		if i%100 == 0 {
			sp.dport = 5432
		}
		if i%100 == 1 {
			sp.dport = 40000 // shares its posting lists with 39936 to 40191
		}
		if i%25 == 0 {
			sp.verdict = v1alpha1.VerdictDropped
		}
		if i%4 == 0 {
			sp.dir = v1alpha1.TrafficDirectionIngress
		}
		if i%20 == 0 {
			sp.proto, sp.dport, sp.l7 = v1alpha1.ProtocolUDP, 53, v1alpha1.L7TypeDNS
		}
		rv := rv0 + uint64(i)
		recs = append(recs, Record{RV: rv, Flow: sp.flow(base.Add(time.Duration(i)*time.Millisecond), rv)})
	}
	if err := s.Write(recs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ns, fields, labels string
		index, value       string
	}{
		{index: "time"},
		{ns: "small", index: "metadata.namespace", value: "small"},
		{fields: "metadata.namespace=small", index: "metadata.namespace", value: "small"},
		{fields: "verdict=Dropped", index: "verdict", value: "Dropped"},
		{ns: "small", fields: "verdict=Dropped", index: "verdict", value: "Dropped"},
		{ns: "big", fields: "verdict==Dropped,l4.destinationPort=5432", index: "l4.destinationPort", value: "5432"},
		{fields: "destination.namespace=small,destination.podName=server,l4.protocol=TCP", index: "destination.podName", value: "small/server"},
		{fields: "destination.podName=server,l4.protocol=UDP", index: "destination.podName", value: "*/server"},
		{fields: "destination.podName=server", index: "destination.podName", value: "*/server"},
		{fields: "destination.podName=nowhere", index: "destination.podName", value: "*/nowhere"},
		{fields: "destination.podName=server,trafficDirection=Ingress", index: "destination.podName", value: "*/server"},
		{fields: "source.podName=client-1,l4.destinationPort=5432", index: "l4.destinationPort", value: "5432"},
		{fields: "source.namespace=big,source.podName=client-1,trafficDirection=Ingress", index: "source.podName", value: "big/client-1"},
		{fields: "trafficDirection=Ingress", index: "trafficDirection", value: "Ingress"},
		{fields: "l4.protocol=UDP,l7.type=DNS", index: "l7.type", value: "DNS"},
		{fields: "l7.type=DNS", index: "l7.type", value: "DNS"},
		{fields: "destination.workload=server", index: "destination.workload", value: "server"},
		{fields: "source.workload=client,destination.workload=server", index: "destination.workload", value: "server"},
		{fields: "source.workload=client", index: "source.workload", value: "client"},
		{fields: "verdict!=Dropped", index: "time"},
		{fields: "source.namespace=big,source.podName=", index: "time"},
		{labels: "app=x", index: "time"},
		{fields: "verdict!=Dropped,l4.destinationPort=1", index: "l4.destinationPort", value: "1"},
		{fields: "l4.destinationPort=40001", index: "l4.destinationPort", value: "~39936"},
		{fields: "l4.destinationPort=40000", index: "l4.destinationPort", value: "~39936"},
	} {
		name := tc.ns + "|" + tc.fields + "|" + tc.labels
		f := flowfilter.Filter{Namespace: tc.ns, FieldSelector: tc.fields, LabelSelector: tc.labels}
		got, p := query(t, s, TimeScan{}, f, 0)
		if p.Index != tc.index || p.Value != tc.value {
			t.Errorf("%s: plan %v, want %s=%s", name, p, tc.index, tc.value)
		}
		want := reference(t, s, TimeScan{}, f, 0)
		if fmt.Sprint(rvsOf(got)) != fmt.Sprint(want) {
			t.Errorf("%s: Query gave %d flows, the time scan %d", name, len(got), len(want))
		}
	}
}

var (
	testNamespaces = []string{"shop", "shop", "shop", "payments", "kube-system", "monitoring", ""}
	testPods       = []string{"web-1", "web-2", "cart-1", "db-0", "api-1", ""}
	testPorts      = []int32{53, 80, 443, 5432, 8080, 0, 40000, 40001, 61234}
	testProtocols  = []v1alpha1.Protocol{v1alpha1.ProtocolTCP, v1alpha1.ProtocolTCP, v1alpha1.ProtocolUDP, v1alpha1.ProtocolICMPv4, ""}
	testVerdicts   = []v1alpha1.Verdict{v1alpha1.VerdictForwarded, v1alpha1.VerdictForwarded, v1alpha1.VerdictForwarded, v1alpha1.VerdictDropped, v1alpha1.VerdictAudit}
	testDirections = []v1alpha1.TrafficDirection{v1alpha1.TrafficDirectionIngress, v1alpha1.TrafficDirectionEgress, v1alpha1.TrafficDirectionUnknown}
	testL7         = []v1alpha1.L7Type{"", "", "", v1alpha1.L7TypeDNS, v1alpha1.L7TypeHTTP}
	testWorkloads  = []string{"web", "cart", "db", ""}
)

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func randomSpec(rng *rand.Rand) spec {
	return spec{
		ns: pick(rng, testNamespaces), srcNS: pick(rng, testNamespaces), srcPod: pick(rng, testPods),
		dstNS: pick(rng, testNamespaces), dstPod: pick(rng, testPods),
		srcWorkload: pick(rng, testWorkloads), dstWorkload: pick(rng, testWorkloads),
		proto: pick(rng, testProtocols), sport: pick(rng, testPorts), dport: pick(rng, testPorts),
		verdict: pick(rng, testVerdicts), dir: pick(rng, testDirections), l7: pick(rng, testL7),
		app: pick(rng, testWorkloads),
	}
}

// randomFilter combines equality and inequality requirements on indexed
// and unindexed fields, a namespace, a label selector and time bounds.
func randomFilter(rng *rand.Rand, base time.Time, span time.Duration) flowfilter.Filter {
	var f flowfilter.Filter
	if rng.IntN(4) == 0 {
		f.Namespace = pick(rng, testNamespaces)
	}
	values := map[string]func() string{
		"metadata.namespace":    func() string { return pick(rng, testNamespaces) },
		"source.namespace":      func() string { return pick(rng, testNamespaces) },
		"destination.namespace": func() string { return pick(rng, testNamespaces) },
		"source.podName":        func() string { return pick(rng, testPods) },
		"destination.podName":   func() string { return pick(rng, testPods) },
		"source.workload":       func() string { return pick(rng, testWorkloads) },
		"destination.workload":  func() string { return pick(rng, testWorkloads) },
		"l4.destinationPort":    func() string { return strconv.Itoa(int(pick(rng, testPorts))) },
		"l4.sourcePort":         func() string { return strconv.Itoa(int(pick(rng, testPorts))) },
		"l4.protocol":           func() string { return string(pick(rng, testProtocols[:4])) },
		"verdict":               func() string { return string(pick(rng, testVerdicts)) },
		"trafficDirection":      func() string { return string(pick(rng, testDirections)) },
		"l7.type":               func() string { return string(pick(rng, testL7[3:])) },
	}
	labels := make([]string, 0, len(values))
	for l := range values {
		labels = append(labels, l)
	}
	// Map order is random: sort for a repeatable test.
	slices.Sort(labels)
	var reqs []string
	for range rng.IntN(5) {
		l := pick(rng, labels)
		op := "="
		if rng.IntN(4) == 0 {
			op = "!="
		}
		reqs = append(reqs, l+op+values[l]())
		if ep, ok := strings.CutSuffix(l, ".podName"); ok && rng.IntN(2) == 0 {
			// A pod index needs its namespace.
			reqs = append(reqs, ep+".namespace="+pick(rng, testNamespaces))
		}
	}
	f.FieldSelector = strings.Join(reqs, ",")
	if rng.IntN(8) == 0 {
		f.LabelSelector = "app=" + pick(rng, testWorkloads[:3])
	}
	if rng.IntN(3) == 0 {
		t := base.Add(time.Duration(rng.Int64N(int64(span))))
		f.Since = &t
	}
	if rng.IntN(3) == 0 {
		t := base.Add(time.Duration(rng.Int64N(int64(span))))
		f.Until = &t
	}
	return f
}

// TestQueryMatchesTimeScan: on random flows and random filters, paged with
// random limits and cursors and snapshots, Query returns exactly what the
// time index through the matcher does.
func TestQueryMatchesTimeScan(t *testing.T) {
	s := openTest(t, Options{})
	rng := rand.New(rand.NewPCG(7, 11))
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	const span = 5 * time.Second
	rv0 := uint64(time.Now().UnixMicro())
	const n = 4000
	for i := 0; i < n; i += 100 {
		var recs []Record
		for j := i; j < i+100; j++ {
			// Coarse times: many flows share one, so the cursor's version
			// matters; times are out of version order.
			at := base.Add(time.Duration(rng.Int64N(int64(span/time.Millisecond))) * time.Millisecond)
			rv := rv0 + uint64(j)
			recs = append(recs, Record{RV: rv, Flow: randomSpec(rng).flow(at, rv)})
		}
		if err := s.Write(recs); err != nil {
			t.Fatal(err)
		}
	}
	plans := map[string]int{}
	for i := range 200 {
		f := randomFilter(rng, base, span)
		if _, err := f.Compile(); err != nil {
			t.Fatalf("filter %d: %v", i, err)
		}
		q := TimeScan{}
		if f.Since != nil {
			q.Since = *f.Since
		}
		if f.Until != nil {
			q.Until = *f.Until
		}
		if rng.IntN(3) == 0 {
			q.MaxRV = rv0 + uint64(rng.IntN(n))
		}
		limit := 0
		if rng.IntN(2) == 0 {
			limit = 1 + rng.IntN(200)
		}
		for page := 0; ; page++ {
			got, p := query(t, s, q, f, limit)
			plans[p.Index]++
			want := reference(t, s, q, f, limit)
			if fmt.Sprint(rvsOf(got)) != fmt.Sprint(want) {
				t.Fatalf("filter %d %+v, scan %+v, page %d, plan %v:\nQuery %v\nscan  %v", i, f, q, page, p, rvsOf(got), want)
			}
			if limit == 0 || len(got) < limit {
				break
			}
			last := got[len(got)-1]
			q.AfterTime, q.AfterRV = last.Flow.Time.Time, last.RV
		}
	}
	t.Logf("plans used: %v", plans)
	if plans["time"] == 0 || len(plans) < 6 {
		t.Errorf("the random filters exercised too few plans: %v", plans)
	}
}

// TestPodInAnyNamespace: a pod name without its namespace is answered
// from the pod index's ranges of every namespace that holds it, exactly as
// the time scan answers it, whatever '/' the names hold, across blocks and
// windows and pages.
func TestPodInAnyNamespace(t *testing.T) {
	s := openTest(t, Options{})
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	rv0 := uint64(time.Now().UnixMicro())
	// Endpoints of the same pod name x in many namespaces, and values
	// that end like it without being it.
	eps := []struct{ ns, pod string }{
		{"shop", "x"}, {"payments", "x"}, {"", "x"}, {"a/b", "x"}, {"a", "b/x"}, {"shop", "xx"},
		{"shop", "ax"}, {"shop", "a/x"}, {strings.Repeat("n", 45), "x"}, {"shop", strings.Repeat("p", 46)},
		{"kube-system", "y"}, {"", ""},
	}
	rng := rand.New(rand.NewPCG(3, 5))
	const batches, perBatch = 40, 50
	for b := range batches {
		var recs []Record
		for i := range perBatch {
			// Some batches hold one pod's namespace only; times overlap
			// between batches.
			src, dst := pick(rng, eps), pick(rng, eps)
			if b%5 == 0 {
				src = eps[b%3]
			}
			sp := spec{ns: src.ns, srcNS: src.ns, srcPod: src.pod, dstNS: dst.ns, dstPod: dst.pod,
				proto: v1alpha1.ProtocolTCP, sport: 40000, dport: pick(rng, testPorts), dir: pick(rng, testDirections)}
			rv := rv0 + uint64(b*perBatch+i)
			at := base.Add(time.Duration(b)*time.Minute + time.Duration(rng.IntN(90))*time.Second)
			recs = append(recs, Record{RV: rv, Flow: sp.flow(at, rv)})
		}
		if err := s.Write(recs); err != nil {
			t.Fatal(err)
		}
	}
	plans := map[string]int{}
	for _, fields := range []string{
		"source.podName=x", "destination.podName=x", "source.podName=b/x", "source.podName=xx",
		"source.podName=" + strings.Repeat("p", 46), "source.podName=y", "source.podName=z",
		"source.podName=x,destination.podName=x", "source.podName=x,l4.destinationPort=443",
		"source.podName=x,source.namespace!=shop", "source.podName=x,trafficDirection=Ingress",
	} {
		for _, limit := range []int{0, 7} {
			for _, w := range []TimeScan{{}, {Since: base.Add(10 * time.Minute)}, {Until: base.Add(3 * time.Minute)},
				{Since: base.Add(20 * time.Minute), Until: base.Add(21 * time.Minute)}, {Since: base.Add(2 * time.Hour)},
				{MaxRV: rv0 + batches*perBatch/2}} {
				f := flowfilter.Filter{FieldSelector: fields}
				q := w
				for page := 0; ; page++ {
					got, p := query(t, s, q, f, limit)
					plans[p.Index+"="+p.Value]++
					want := reference(t, s, q, f, limit)
					if fmt.Sprint(rvsOf(got)) != fmt.Sprint(want) {
						t.Fatalf("%s, scan %+v, page %d, plan %v:\nQuery %v\nscan  %v", fields, q, page, p, rvsOf(got), want)
					}
					if limit == 0 || len(got) < limit {
						break
					}
					last := got[len(got)-1]
					q.AfterTime, q.AfterRV = last.Flow.Time.Time, last.RV
				}
			}
		}
	}
	t.Logf("plans used: %v", plans)
	// The probe counts every namespace's flows of the pod.
	for _, fields := range []string{"source.podName=x", "destination.podName=b/x"} {
		f := flowfilter.Filter{FieldSelector: fields}
		_, p := query(t, s, TimeScan{}, f, 0)
		want := min(len(reference(t, s, TimeScan{}, f, 0)), probeLimit)
		if p.Value != "*/"+strings.SplitN(fields, "=", 2)[1] || p.Estimate < want {
			t.Errorf("%s: plan %v, want */pod and an estimate of at least %d", fields, p, want)
		}
	}
}

// TestQueryBeforeIndex: flows written without index entries (an older
// agent, or DisableIndex) keep Query on the time index while they last.
func TestQueryBeforeIndex(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Retention: time.Hour, DisableIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	rv := uint64(time.Now().UnixMicro())
	sp := spec{ns: "shop", verdict: v1alpha1.VerdictDropped}
	if err := s.Write([]Record{{RV: rv, Flow: sp.flow(time.Now(), rv)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, Options{Dir: dir})
	if err := s.Write([]Record{{RV: rv + 1, Flow: sp.flow(time.Now(), rv+1)}}); err != nil {
		t.Fatal(err)
	}
	got, p := query(t, s, TimeScan{}, flowfilter.Filter{FieldSelector: "verdict=Dropped"}, 0)
	if p.Index != "time" || len(got) != 2 {
		t.Fatalf("plan %v, %d flows; want the time index and 2 flows", p, len(got))
	}
}

// TestIndexLeavesWithItsFrames: no key carries a Badger TTL, which would
// follow the wall clock; Maintain removes a block's catalog entry and posting
// lists with its frames, once the block has left the store by the store's
// clock, bounded by its newest version.
func TestIndexLeavesWithItsFrames(t *testing.T) {
	const retention = time.Minute
	var clock atomicTime
	wall := time.Now()
	clock.set(wall)
	s := openTest(t, Options{Retention: retention, Now: clock.now})
	oldRV := uint64(wall.Add(-10 * retention).UnixMicro())
	newRV := uint64(wall.UnixMicro())
	sp := spec{ns: "shop", srcNS: "shop", srcPod: "web-1", dstNS: "shop", dstPod: "db-0", srcWorkload: "web",
		dstWorkload: "db", proto: v1alpha1.ProtocolTCP, sport: 1, dport: 5432, verdict: v1alpha1.VerdictForwarded,
		dir: v1alpha1.TrafficDirectionEgress, l7: v1alpha1.L7TypeHTTP}
	write := func(rv0 uint64, at time.Time) {
		var recs []Record
		for i := range 10 {
			recs = append(recs, Record{RV: rv0 + uint64(i), Flow: sp.flow(at, rv0+uint64(i))})
		}
		if err := s.Write(recs); err != nil {
			t.Fatal(err)
		}
	}
	write(oldRV, wall.Add(-10*retention))
	write(newRV, wall)
	// keysByBlock maps the first version of each block to its catalog
	// and posting keys.
	keysByBlock := func() map[uint64]int {
		m := map[uint64]int{}
		err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().Key()
				if it.Item().ExpiresAt() != 0 {
					t.Fatalf("key %q expires", k)
				}
				if k[0] == prefixCatalog || k[0] == prefixPosting {
					m[binary.BigEndian.Uint64(k[len(k)-8:])]++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// One catalog entry, one posting list per index the flows have a
	// value for.
	want := 1
	for _, v := range indexValues(sp.flow(wall, oldRV)) {
		if v != "" {
			want++
		}
	}
	blocks := keysByBlock()
	if len(blocks) != 2 || blocks[oldRV] != want || blocks[newRV] != want {
		t.Fatalf("keys by block %v, want %d for each of %d and %d", blocks, want, oldRV, newRV)
	}
	// A clock an hour ahead of the flows being written hides the flows
	// from answers, but Maintain deletes only what the newest version
	// allows: the old block.
	clock.set(wall.Add(time.Hour))
	if got, _ := query(t, s, TimeScan{}, flowfilter.Filter{}, 0); len(got) != 0 {
		t.Fatalf("%d flows answered an hour past their retention", len(got))
	}
	r, err := s.Maintain(clock.now(), func(uint64) error { t.Error("no budget"); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if r.Dropped != 1 || r.NewestFlowAge < 59*time.Minute {
		t.Fatalf("Maintain an hour ahead: %+v; want the old bucket dropped and the clock ahead by an hour", r)
	}
	blocks = keysByBlock()
	if len(blocks) != 1 || blocks[newRV] != want {
		t.Fatalf("keys by block after Maintain %v, want %d for %d only", blocks, want, newRV)
	}
	// The clock steps back: the new flows are all there again.
	clock.set(wall)
	got, p := query(t, s, TimeScan{}, flowfilter.Filter{FieldSelector: "source.namespace=shop,source.podName=web-1"}, 0)
	if p.Index != "source.podName" || len(got) != 10 || got[0].RV != newRV {
		t.Fatalf("plan %v, flows %v; want source.podName and the 10 new flows", p, rvsOf(got))
	}
	if c, err := s.Check(); err != nil || len(c.Problems) != 0 || c.Blocks != 1 {
		t.Fatalf("Check: %+v, %v", c, err)
	}
}

// atomicTime is a clock that a test sets.
type atomicTime struct{ ns atomic.Int64 }

func (c *atomicTime) set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *atomicTime) now() time.Time  { return time.Unix(0, c.ns.Load()) }
