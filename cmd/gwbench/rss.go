package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// readRSS returns VmRSS of pid in KiB, from /proc/<pid>/status.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("VmRSS:")) {
			continue
		}
		f := bytes.Fields(line[len("VmRSS:"):])
		if len(f) != 2 || string(f[1]) != "kB" {
			break
		}
		return strconv.ParseInt(string(f[0]), 10, 64)
	}
	return 0, fmt.Errorf("pid %d: no VmRSS in /proc/%d/status", pid, pid)
}

// readRSSAll returns the VmRSS of each pid in KiB and their sum.
func readRSSAll(pids []int) (sum int64, each []int64, err error) {
	for _, pid := range pids {
		kb, err := readRSS(pid)
		if err != nil {
			return 0, nil, err
		}
		sum += kb
		each = append(each, kb)
	}
	return sum, each, nil
}
