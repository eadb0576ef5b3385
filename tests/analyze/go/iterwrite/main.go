// One goroutine ranges over a map while another writes it: "fatal error:
// concurrent map iteration and map write".
package main

import "sync"

var sink int

func iterate(m map[int]int, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		for k, v := range m {
			sink += k + v
		}
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
	for i := 0; i < 1000; i++ {
		m[i] = i
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go iterate(m, &wg)
	go writer(m, &wg)
	wg.Wait()
}
