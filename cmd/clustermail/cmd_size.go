package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeUnits maps the accepted unit suffixes (lower-cased) to their factor.
// K, KB and KiB all mean 1024: mail quotas are traditionally binary, and
// accepting the decimal-looking spellings with the same meaning avoids
// surprising an operator who types "500MB".
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}

// parseSize parses a byte size such as "1048576", "500M", "2G", "1.5GiB" or
// "0". Units are powers of 1024 and case-insensitive; a fraction is allowed
// with a unit and the result is rounded to whole bytes.
func parseSize(s string) (int64, error) {
	in := strings.TrimSpace(s)
	// Only digits and a dot form the number, so that signs, exponents,
	// hex and underscores, which ParseFloat would accept, are rejected.
	i := strings.IndexFunc(in, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(in)
	}
	num, unit := in[:i], strings.ToLower(strings.TrimSpace(in[i:]))
	if num == "" {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit K, M, G or T, e.g. 500M", s)
	}
	factor, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use K, M, G or T, optionally with B or iB)", s, strings.TrimSpace(in[i:]))
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/factor {
			return 0, fmt.Errorf("invalid size %q: out of range", s)
		}
		return n * factor, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: bad number %q", s, num)
	}
	if factor == 1 {
		return 0, fmt.Errorf("invalid size %q: a byte count must be a whole number", s)
	}
	b := math.Round(f * float64(factor))
	// float64(MaxInt64) rounds up to 2^63, which itself does not fit.
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q: out of range", s)
	}
	return int64(b), nil
}

// formatSize renders a byte count compactly with binary units and at most
// one decimal ("512B", "500MiB", "1.5GiB"), in a form parseSize accepts.
func formatSize(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + "B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	u := 0
	// Compare the rounded value so that 1023.96KiB becomes 1MiB, not 1024KiB.
	for math.Round(v*10)/10 >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + units[u]
}
