// One goroutine reads a map while another writes it: "fatal error:
// concurrent map read and map write".
package main

import "sync"

var sink int

func reader(m map[int]int, wg *sync.WaitGroup) {
	defer wg.Done()
	for i := 0; ; i++ {
		sink += m[i%1000]
	}
}

func writer(m map[int]int, wg *sync.WaitGroup) {
	defer wg.Done()
	for i := 0; ; i++ {
		m[i%1000] = i
	}
}

func main() {
	m := make(map[int]int)
	var wg sync.WaitGroup
	wg.Add(2)
	go reader(m, &wg)
	go writer(m, &wg)
	wg.Wait()
}
