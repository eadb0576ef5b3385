// A goroutine leak: workers blocked forever on a channel nobody sends on,
// plus a few other states.  Prints "ready" when every goroutine is parked;
// the test then sends SIGQUIT and (with GOTRACEBACK=all) Go prints every
// goroutine's stack.  With -n N it starts N workers (default 200).  With
// -crash it then races two writers on one map, so the runtime stops with
// "fatal error: concurrent map writes" and prints every goroutine.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

type job struct{ id int }

func worker(jobs <-chan job, done chan<- int) {
	for j := range jobs {
		done <- j.id
	}
}

func waitForLock(mu *sync.Mutex) {
	mu.Lock()
	defer mu.Unlock()
}

func recordSessions(m map[int]int, base int) {
	for i := 0; ; i++ {
		m[base+i%1000] = i
	}
}

func sleeper() {
	time.Sleep(time.Hour)
}

func main() {
	n := flag.Int("n", 200, "workers to leak")
	crash := flag.Bool("crash", false, "then race two map writers")
	flag.Parse()
	jobs := make(chan job)
	done := make(chan int)
	for i := 0; i < *n; i++ {
		go worker(jobs, done)
	}
	var mu sync.Mutex
	mu.Lock()
	for i := 0; i < 3; i++ {
		go waitForLock(&mu)
	}
	go sleeper()
	for runtime.NumGoroutine() < *n+5 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	fmt.Fprintln(os.Stdout, "ready")
	if *crash {
		sessions := make(map[int]int)
		go recordSessions(sessions, 0)
		go recordSessions(sessions, 1000)
	}
	select {}
}
