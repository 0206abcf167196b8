package capture

import "testing"

func TestLoad(t *testing.T) {
	d := requireDatapath(t, Options{NoDrops: true})
	if _, err := d.Stats(); err != nil {
		t.Fatal(err)
	}
}
