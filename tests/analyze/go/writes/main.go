// Two goroutines write one map without a lock: the runtime stops the
// program with "fatal error: concurrent map writes".
package main

import "sync"

func writer(m map[int]int, base int, wg *sync.WaitGroup) {
	defer wg.Done()
	for i := 0; ; i++ {
		m[base+i%1000] = i
	}
}

func main() {
	m := make(map[int]int)
	var wg sync.WaitGroup
	wg.Add(2)
	go writer(m, 0, &wg)
	go writer(m, 1000, &wg)
	wg.Wait()
}
