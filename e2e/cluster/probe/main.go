// Command fd-probe is the test program in the e2e cluster's locally built images: an HTTP
// server that says which pod, node and zone answered, and the client side (HTTP GET and DNS
// look-ups) that the smoke test runs inside pods to check pod-to-pod, Service and DNS
// traffic. Standard library only, so it links statically and needs nothing in its image.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const usage = `usage:
  fd-probe serve [-addr :8080]          answer GET / with "pod=… node=… zone=… ip=…"
  fd-probe get [-timeout 5s] [-tries N] URL   GET URL, print the body; exit 1 on failure
  fd-probe dns [-server IP:53] [-tries N] NAME  resolve NAME (A/AAAA) and print the addresses
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "get":
		err = get(os.Args[2:])
	case "dns":
		err = dns(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		err = fmt.Errorf("unknown command %q\n%s", os.Args[1], usage)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fd-probe:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", ":8080", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pod=%s node=%s zone=%s ip=%s from=%s\n",
			host, os.Getenv("NODE_NAME"), os.Getenv("ZONE"), os.Getenv("POD_IP"), r.RemoteAddr)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return srv.ListenAndServe()
}

func get(args []string) error {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	timeout := fs.Duration("timeout", 5*time.Second, "per-try timeout")
	tries := fs.Int("tries", 1, "attempts, one second apart")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("get needs one URL")
	}
	client := &http.Client{Timeout: *timeout}
	var last error
	for i := 0; i < *tries; i++ {
		if i > 0 {
			time.Sleep(time.Second)
		}
		resp, err := client.Get(fs.Arg(0))
		if err != nil {
			last = err
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			last = err
			continue
		}
		if resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("%s: %s", fs.Arg(0), resp.Status)
			continue
		}
		fmt.Print(string(body))
		return nil
	}
	return last
}

func dns(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ExitOnError)
	server := fs.String("server", "", "DNS server IP:port (default: the system resolver, /etc/resolv.conf)")
	tries := fs.Int("tries", 1, "attempts, one second apart")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("dns needs one NAME")
	}
	r := &net.Resolver{PreferGo: true}
	if *server != "" {
		addr := *server
		if !strings.Contains(addr, ":") {
			addr += ":53"
		}
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	var last error
	for i := 0; i < *tries; i++ {
		if i > 0 {
			time.Sleep(time.Second)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		addrs, err := r.LookupHost(ctx, fs.Arg(0))
		cancel()
		if err != nil {
			last = err
			continue
		}
		fmt.Println(strings.Join(addrs, " "))
		return nil
	}
	return last
}
