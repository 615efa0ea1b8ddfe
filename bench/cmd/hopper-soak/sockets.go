package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
)

// tcpStates names the states of /proc/net/tcp (include/net/tcp_states.h).
var tcpStates = map[string]string{
	"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
	"06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}

// socketSummary counts the TCP sockets process pid holds open, by state and
// by what the far end is: a client (connected to hopper's listen address),
// an upstream, the origin (direct egress), or something else; and its pipes.
func socketSummary(pid int, listen string, ups []*upstream, originAddr string) []string {
	inodes := map[string]bool{}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil
	}
	pipes := 0
	for _, e := range ents {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
		if strings.HasPrefix(l, "pipe:") {
			pipes++
		}
	}
	role := map[string]string{originAddr: "origin"}
	for _, u := range ups {
		role[u.addr()] = "upstream " + u.prof.name
	}
	counts := map[string]int{}
	for _, file := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, file))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 10 || !inodes[fl[9]] {
				continue
			}
			local, remote := procAddr(fl[1]), procAddr(fl[2])
			who := role[remote]
			switch {
			case local == listen:
				who = "client"
			case tcpStates[fl[3]] == "LISTEN":
				who = "listener"
			case who == "":
				who = "other"
			}
			counts[fmt.Sprintf("%-12s %s", tcpStates[fl[3]], who)]++
		}
		f.Close()
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys), len(keys)+1)
	for i, k := range keys {
		out[i] = fmt.Sprintf("%5d  %s", counts[k], k)
	}
	if pipes > 0 {
		out = append(out, fmt.Sprintf("%5d  pipe fds (the Go runtime's pool of splice pipes; a GC frees them)", pipes))
	}
	return out
}

// procAddr decodes /proc/net/tcp's "0100007F:1F90" (IPv4, little-endian
// words) into "127.0.0.1:8080"; IPv6 entries keep their v4-mapped form.
func procAddr(s string) string {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return s
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return s
	}
	for i := 0; i+4 <= len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	port, _ := strconv.ParseUint(p, 16, 16)
	ip := net.IP(b)
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
}

// listenDrops reads the kernel's count of connections dropped because a
// listen queue was full (TcpExt ListenDrops), for this network namespace:
// -1 when unavailable.
func listenDrops() int64 {
	data, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return -1
	}
	lines := strings.Split(string(data), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(values) != len(names) {
			continue
		}
		for j, n := range names {
			if n == "ListenDrops" {
				v, _ := strconv.ParseInt(values[j], 10, 64)
				return v
			}
		}
	}
	return -1
}
