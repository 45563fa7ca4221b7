//go:build !unix

package machine

import (
	"errors"
	"time"
)

func wakes(int) (time.Duration, error) {
	return 0, errors.New("the wake-up round trip is measured on unix systems only")
}
