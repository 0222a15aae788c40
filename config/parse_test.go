package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"0":        0,
		"1048576":  1 << 20,
		"512B":     512,
		"1KB":      1000,
		"1kB":      1000,
		"50MB":     50e6,
		"2GB":      2e9,
		"1TB":      1e12,
		"1KiB":     1024,
		"50MiB":    50 << 20,
		"1.5GiB":   3 << 29,
		"2TiB":     2 << 40,
		" 10 MiB ": 10 << 20,
		"0.5KiB":   512,
		"1.0001KB": 1000, // fractions of a byte round down
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, got, in)
		}
	}
	bad := map[string]string{
		"":           "is not a size",
		"MiB":        "is not a size",
		"-1MiB":      "is not a size",
		"1.5":        "fraction of a byte",
		"10Mb":       `unknown unit "Mb"`,
		"10mib":      `unknown unit "mib"`,
		"10 K":       `unknown unit "K"`,
		"1.2.3MB":    `unknown unit ".3MB"`,
		"9000000TiB": "too large",
	}
	for in, reason := range bad {
		_, err := ParseSize(in)
		if assert.Error(t, err, in) {
			assert.Contains(t, err.Error(), reason, in)
		}
	}
}

func TestParseDuration(t *testing.T) {
	// Everything time.ParseDuration accepts means the same here.
	for _, in := range []string{"0", "1h", "90s", "1h30m", "1.5h", "-2m", "+3s", "300ms", "1us", "1µs", "2h45m30.5s", ".5m", "1.m"} {
		want, err := time.ParseDuration(in)
		require.NoError(t, err, in)
		got, err := ParseDuration(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, got, in)
		}
	}
	good := map[string]time.Duration{
		"1d":    24 * time.Hour,
		"1.5d":  36 * time.Hour,
		"0.1d":  144 * time.Minute,
		"2w":    14 * 24 * time.Hour,
		"1w2d":  9 * 24 * time.Hour,
		"1d12h": 36 * time.Hour,
		"30d":   720 * time.Hour,
		"-1d":   -24 * time.Hour,
	}
	for in, want := range good {
		got, err := ParseDuration(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, got, in)
		}
	}
	bad := map[string]string{
		"":        "is not a duration",
		"-":       "is not a duration",
		"d":       "is not a duration",
		"10":      "has no unit",
		"1y":      `unknown unit "y"`,
		"1 h":     `unknown unit " h"`,
		"1D":      `unknown unit "D"`,
		"20000w":  "out of range",
		"1h..5m":  "is not a duration",
		"hourly":  "is not a duration",
		"1h30":    "has no unit",
		"1d-1h":   `unknown unit "d-"`,
		"1.5.5ms": "is not a duration",
	}
	for in, reason := range bad {
		_, err := ParseDuration(in)
		if assert.Error(t, err, in) {
			assert.Contains(t, err.Error(), reason, in)
		}
	}
}

func TestParseGrid(t *testing.T) {
	g, err := ParseGrid("  24x1h|7x1d |  12x30d ")
	require.NoError(t, err)
	assert.Equal(t, Grid{Text: "24x1h|7x1d |  12x30d", Buckets: []Bucket{
		{24, time.Hour}, {7, 24 * time.Hour}, {12, 30 * 24 * time.Hour}}}, g)
	assert.Equal(t, 24*time.Hour+7*24*time.Hour+360*24*time.Hour, g.Span())
	assert.False(t, g.IsZero())

	g, err = ParseGrid("1x1m | 1x1m")
	require.NoError(t, err, "equal periods are non-decreasing")
	assert.Len(t, g.Buckets, 2)

	g, err = ParseGrid("   ")
	require.NoError(t, err)
	assert.True(t, g.IsZero(), "an empty grid keeps everything")
	assert.Equal(t, time.Duration(0), g.Span())

	bad := map[string]string{
		"24":               "is not COUNTxPERIOD",
		"24x":              `"" is not a duration`,
		"x1h":              `count "" is not a whole number`,
		"-1x1h":            `count "-1" is not a whole number`,
		"1.5x1h":           `count "1.5" is not a whole number`,
		"24x1h |":          "bucket 2 of",
		"24x1h | 7x1d | 1": "is not COUNTxPERIOD",
		"1x59s":            "shorter than 1m",
		"1x1d | 1x1h":      "shorter than the previous bucket's 1d",
		"99999999999x1w":   "spans more than 290 years",
		"24x1y":            `unknown unit "y"`,
		"24x1h || 7x1d":    "bucket 2 of",
		"0x1h":             `count "0" is not a whole number`,
	}
	for in, reason := range bad {
		_, err := ParseGrid(in)
		if assert.Error(t, err, in) {
			assert.Contains(t, err.Error(), reason, in)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	e, err := ParseEndpoint("nas-b:replicas/share01")
	require.NoError(t, err)
	assert.Equal(t, Endpoint{Host: "nas-b", Dataset: "replicas/share01"}, e)
	assert.Equal(t, "nas-b:replicas/share01", e.String())

	e, err = ParseEndpoint("nas-b:a:b")
	require.NoError(t, err, "only the first colon separates the host")
	assert.Equal(t, "a:b", e.Dataset)

	for _, bad := range []string{"nas-b", ":x", "nas-b:", "nas-b:/x", "nas-b:x/", "nas-b:x/../y", "nas-b:x/.ferry"} {
		_, err := ParseEndpoint(bad)
		assert.Error(t, err, bad)
	}
}

func TestOverlap(t *testing.T) {
	assert.True(t, overlap("a", "a"))
	assert.True(t, overlap("a/b", "a"))
	assert.True(t, overlap("a", "a/b/c"))
	assert.False(t, overlap("ab", "a"), "a prefix that is not a whole component")
	assert.False(t, overlap("a/b", "a/c"))
}
