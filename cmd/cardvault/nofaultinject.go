//go:build !faultinject

package main

import (
	"errors"

	"github.com/cardvault/cardvault/hsm"
)

// faultInjection says this binary can inject faults: the product cannot
// (faultinject.go is built only with -tags faultinject).
const faultInjection = false

func restartUnderneath(*hsm.Module) error {
	return errors.New("this binary injects no faults; build it with -tags faultinject (scripts/bench.sh does)")
}

func rewrapKillHook() (func(int), error) { return nil, nil }
