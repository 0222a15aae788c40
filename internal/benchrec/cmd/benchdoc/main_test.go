package main

import "testing"

func TestCPUFeaturesNamesPresentAndMissingSets(t *testing.T) {
	got := cpuFeatures([]string{"fpu", "aes", "avx2", "sha_ni"})
	want := "AVX2, no AVX-512, AES-NI, no VAES, SHA-NI"
	if got != want {
		t.Fatalf("cpuFeatures = %q, want %q", got, want)
	}
}
