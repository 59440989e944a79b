// Command hello is the Go hello-world that `make bench` row 0 compares
// mabd's start-up with: the least a Go program costs to start and exit.
package main

import "fmt"

func main() { fmt.Println("hello") }
