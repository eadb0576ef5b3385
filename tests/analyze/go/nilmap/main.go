// A map declared but never made: "panic: assignment to entry in nil map".
package main

type registry struct {
	byName map[string]int
}

func (r *registry) add(name string, id int) {
	r.byName[name] = id
}

func main() {
	r := &registry{}
	r.add("alice", 1)
}
