// Command delayproxy forwards a loopback port to a TCP server with a fixed
// delay each way, for benchmarks whose servers run as processes of their
// own (scripts/bench-replicas.sh puts it between the replicas and
// PostgreSQL). It prints its address and runs until it is signalled.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cardvault/cardvault/internal/delayproxy"
)

func main() {
	to := flag.String("to", "", "the server to forward to, host:port")
	delay := flag.Duration("delay", time.Millisecond, "the delay each way (0 to 50ms)")
	flag.Parse()
	if *to == "" || *delay < 0 || *delay > 50*time.Millisecond {
		fmt.Fprintln(os.Stderr, "usage: delayproxy --to HOST:PORT [--delay 1ms]")
		os.Exit(2)
	}
	p, err := delayproxy.Start(*to, *delay)
	if err != nil {
		fmt.Fprintln(os.Stderr, "delayproxy:", err)
		os.Exit(1)
	}
	fmt.Println(p.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	p.Close()
}
