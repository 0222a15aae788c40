package redact

import "testing"

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.example.com":                       "https://hooks.example.com",
		"https://hooks.example.com/services/T0/B0/s3cret": "https://hooks.example.com/REDACTED",
		"https://hooks.example.com/?token=s3cret":         "https://hooks.example.com/?REDACTED",
		"https://user:s3cret@hooks.example.com":           "https://REDACTED@hooks.example.com",
		"http://h#s3cret":                                 "http://h#REDACTED",
		"http://h:bad port/x?token=s3cret":                "http://h:bad port/x?REDACTED",
		"%zz://user:s3cret@h/x":                           "REDACTED@h/x",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}
