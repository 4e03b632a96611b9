//go:build !faultinject

package main

import (
	"github.com/cardvault/cardvault/hsm"
)

// faultInjection says this binary can inject faults: the product cannot
// (faultinject.go is built only with -tags faultinject).
const faultInjection = false

func restartUnderneath(*hsm.Module) error { return errNoFaultInjection }

func rewrapKillHook() (func(int), error) { return nil, nil }
