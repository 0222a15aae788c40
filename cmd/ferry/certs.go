package main

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/ferry-nas/ferry/certs"
)

func init() { rootCmd.AddCommand(newCertsCmd()) }

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make the CA and host certificates of the data plane (mutual TLS)",
		Long: `The data plane between workers is TLS 1.3 with mutual certificates.
'ferry certs init' makes a private CA once; 'ferry certs issue HOST' makes the
certificate of each NAS host, named exactly as the host is named in the ferry
configuration. Copy ca.pem to every host, and HOST.pem + HOST-key.pem to HOST.
Keep ca-key.pem on the machine that issues certificates.`,
	}
	cmd.AddCommand(newCertsInitCmd(), newCertsIssueCmd())
	return cmd
}

func newCertsInitCmd() *cobra.Command {
	var dir string
	var force bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the CA (ca.pem, ca-key.pem)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certPath, keyPath, err := certs.Init(dir, force)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "wrote %s\nwrote %s (keep it private)\n", certPath, keyPath)
			fmt.Fprintf(out, "next: ferry certs issue HOST%s, for every host in the configuration\n", dirArg(dir))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "certs", "certificate directory")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing CA (every host certificate must then be issued again)")
	return cmd
}

func newCertsIssueCmd() *cobra.Command {
	var (
		dir   string
		ips   []string
		dns   []string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "issue HOST",
		Short: "Issue HOST.pem and HOST-key.pem, signed by the CA",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opt := certs.IssueOptions{DNSNames: dns, Force: force}
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return fmt.Errorf("--ip %q is not an IP address", s)
				}
				opt.IPs = append(opt.IPs, ip)
			}
			certPath, keyPath, err := certs.Issue(dir, args[0], opt)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\nwrote %s (copy both, with ca.pem, to %s)\n", certPath, keyPath, args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "certs", "certificate directory (holding the CA)")
	cmd.Flags().StringArrayVar(&ips, "ip", nil, "extra IP address SAN (repeatable)")
	cmd.Flags().StringArrayVar(&dns, "dns", nil, "extra DNS name SAN (repeatable)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing certificate for HOST")
	return cmd
}

func dirArg(dir string) string {
	if dir == "certs" {
		return ""
	}
	return " --dir " + dir
}
