package server

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// parseFrontendAddress checks that addr is IP:port (Temporal binds the
// frontend to an IP, not a name) and returns its parts.
func parseFrontendAddress(addr string) (net.IP, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, fmt.Errorf("frontend address %q: want IP:PORT such as 127.0.0.1:7233 (--address): %v", addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, 0, fmt.Errorf("frontend address %q: the host must be an IP address such as 127.0.0.1 or 0.0.0.0, not a name (--address)", addr)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return nil, 0, fmt.Errorf("frontend address %q: %v (--address)", addr, err)
	}
	return ip, port, nil
}

// parseUIAddress accepts HOST:PORT, where HOST may be a name or empty (all
// interfaces).
func parseUIAddress(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("UI address %q: want HOST:PORT such as 127.0.0.1:8233, or \"off\" (--ui-address): %v", addr, err)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("UI address %q: %v (--ui-address)", addr, err)
	}
	return host, port, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 0 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 0 to 65535", s)
	}
	return p, nil
}

// reserve listens on host:port (port 0: any free port) so that a busy address
// is reported here, with the option that changes it, rather than by the
// Temporal server or the UI server, which both end the process on a listen
// error. The caller closes the listener just before handing the port over.
func reserve(what, host string, port int, flag string) (net.Listener, int, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			return nil, 0, fmt.Errorf("%s address %s is already in use (another ferry server or Temporal?); choose another with %s", what, addr, flag)
		case errors.Is(err, syscall.EADDRNOTAVAIL):
			return nil, 0, fmt.Errorf("%s address %s is not an address of this host; choose another with %s", what, addr, flag)
		case errors.Is(err, syscall.EACCES):
			return nil, 0, fmt.Errorf("%s address %s: permission denied (ports below 1024 need privileges); choose another with %s", what, addr, flag)
		}
		return nil, 0, fmt.Errorf("%s address %s: %w (change it with %s)", what, addr, err, flag)
	}
	return l, l.Addr().(*net.TCPAddr).Port, nil
}

// dialHost turns a listen host into one a local client can dial: the
// unspecified address (all interfaces) becomes loopback.
func dialHost(host string) string {
	if host == "" {
		return "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ip.To4() != nil {
			return "127.0.0.1"
		}
		return "::1"
	}
	return host
}

type listeners []net.Listener

func (ls *listeners) add(l net.Listener) { *ls = append(*ls, l) }

func (ls *listeners) closeAll() {
	for _, l := range *ls {
		_ = l.Close()
	}
	*ls = nil
}
