// crid-spdy-client: an independent SPDY/3.1 client for crid's streaming server, built on
// spdystream (the library kubectl and the kubelet use), from Debian's
// golang-github-docker-spdystream-dev. tests/streaming.rs builds and runs it.
//
//	crid-spdy-client exec URL [-tty] [-stdin TEXT] [-proto P]
//	  prints stdout, then "STATUS <json>" from the error stream
//	crid-spdy-client portforward URL PORT REQUEST
//	  sends REQUEST on one data stream, prints what comes back
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/moby/spdystream"
)

func dial(raw, proto string) *spdystream.Connection {
	u, err := url.Parse(raw)
	if err != nil {
		fail("url: %v", err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		fail("dial: %v", err)
	}
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: %s\r\nContent-Length: 0\r\n\r\n", u.RequestURI(), u.Host, proto)
	if _, err := conn.Write([]byte(req)); err != nil {
		fail("write: %v", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		fail("response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("HTTP %d %s\n", resp.StatusCode, body)
		os.Exit(3)
	}
	if br.Buffered() > 0 {
		fail("server sent data before the client's first frame")
	}
	sc, err := spdystream.NewConnection(conn, false)
	if err != nil {
		fail("spdy: %v", err)
	}
	go sc.Serve(spdystream.NoOpStreamHandler)
	return sc
}

func stream(sc *spdystream.Connection, headers http.Header) *spdystream.Stream {
	s, err := sc.CreateStream(headers, nil, false)
	if err != nil {
		fail("create stream %v: %v", headers, err)
	}
	if err := s.WaitTimeout(10 * time.Second); err != nil {
		fail("stream %v not accepted: %v", headers, err)
	}
	return s
}

func fail(f string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "crid-spdy-client: "+f+"\n", a...)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: exec URL [flags] | portforward URL PORT REQUEST")
	}
	switch os.Args[1] {
	case "exec":
		execCmd(os.Args[2], os.Args[3:])
	case "portforward":
		if len(os.Args) != 5 {
			fail("usage: portforward URL PORT REQUEST")
		}
		portForward(os.Args[2], os.Args[3], os.Args[4])
	default:
		fail("unknown command %q", os.Args[1])
	}
}

func execCmd(raw string, args []string) {
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	tty := fs.Bool("tty", false, "a terminal (stdout only, resize stream)")
	stdin := fs.String("stdin", "", "what to send on stdin, then close it")
	useStdin := fs.Bool("use-stdin", false, "open a stdin stream")
	stderr := fs.Bool("stderr", false, "open a stderr stream")
	proto := fs.String("proto", "v4.channel.k8s.io", "X-Stream-Protocol-Version")
	cols := fs.Int("cols", 0, "send this terminal width (with -rows)")
	rows := fs.Int("rows", 0, "send this terminal height")
	fs.Parse(args)
	sc := dial(raw, *proto)
	errS := stream(sc, http.Header{"streamType": {"error"}})
	var in *spdystream.Stream
	if *useStdin {
		in = stream(sc, http.Header{"streamType": {"stdin"}})
	}
	out := stream(sc, http.Header{"streamType": {"stdout"}})
	var errOut *spdystream.Stream
	if *stderr && !*tty {
		errOut = stream(sc, http.Header{"streamType": {"stderr"}})
	}
	if *tty {
		rs := stream(sc, http.Header{"streamType": {"resize"}})
		if *cols > 0 {
			b, _ := json.Marshal(map[string]int{"Width": *cols, "Height": *rows})
			rs.Write(b)
		}
	}
	if in != nil {
		go func() {
			if *stdin != "" {
				in.Write([]byte(*stdin))
			}
			if !*tty {
				in.Close()
			}
		}()
	}
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(out)
		done <- b
	}()
	errDone := make(chan []byte, 1)
	if errOut != nil {
		go func() {
			b, _ := io.ReadAll(errOut)
			errDone <- b
		}()
	} else {
		errDone <- nil
	}
	status, _ := io.ReadAll(errS)
	stdout := <-done
	stderrB := <-errDone
	fmt.Printf("STDOUT %q\n", stdout)
	fmt.Printf("STDERR %q\n", stderrB)
	fmt.Printf("STATUS %s\n", status)
	sc.Close()
}

func portForward(raw, port, request string) {
	if _, err := strconv.Atoi(port); err != nil {
		fail("port: %v", err)
	}
	sc := dial(raw, "portforward.k8s.io")
	errS := stream(sc, http.Header{"streamType": {"error"}, "port": {port}, "requestID": {"0"}})
	data := stream(sc, http.Header{"streamType": {"data"}, "port": {port}, "requestID": {"0"}})
	errC := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(errS)
		errC <- b
	}()
	data.Write([]byte(request))
	got, _ := io.ReadAll(data)
	fmt.Printf("DATA %q\n", got)
	select {
	case e := <-errC:
		fmt.Printf("ERROR %q\n", e)
	case <-time.After(2 * time.Second):
		fmt.Printf("ERROR \"\"\n")
	}
	sc.Close()
}
