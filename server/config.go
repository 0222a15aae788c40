package server

import (
	"fmt"
	"net"
	"strconv"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/temporal"
)

const (
	// loopback is where the history, matching and worker services listen:
	// only the frontend is for clients.
	loopback = "127.0.0.1"
	// clusterName is the single, local cluster.
	clusterName = "active"
	storeName   = "sqlite"
	// transferPollRPS bounds the history shard's transfer-queue reads.
	// A read only follows a commit that added tasks, so the bound batches
	// reads under load and costs nothing when idle.
	transferPollRPS = 1000
)

// serverConfig is the static configuration of a single-process, single-shard
// server on one SQLite store. The frontend listens on bindIP:port and is
// reached at frontend; the other services listen on loopback ports.
func serverConfig(store *config.SQL, bindIP string, port int, frontend string, internal map[string]int) *config.Config {
	cfg := &config.Config{}
	cfg.Global.Membership = config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: loopback}
	// No metrics listener, no pprof: nothing listens that was not asked for.
	cfg.Persistence = config.Persistence{
		DefaultStore:     storeName,
		VisibilityStore:  storeName,
		NumHistoryShards: 1,
		DataStores:       map[string]config.DataStore{storeName: {SQL: store}},
	}
	cfg.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {Enabled: true, InitialFailoverVersion: 1, RPCAddress: frontend},
		},
	}
	cfg.DCRedirectionPolicy = config.DCRedirectionPolicy{Policy: "noop"}
	cfg.Services = map[string]config.Service{
		string(primitives.FrontendService): {RPC: config.RPC{GRPCPort: port, BindOnIP: bindIP}},
	}
	for svc, p := range internal {
		cfg.Services[svc] = config.Service{RPC: config.RPC{GRPCPort: p, BindOnIP: loopback}}
	}
	cfg.Archival.History.State = "disabled"
	cfg.Archival.Visibility.State = "disabled"
	cfg.NamespaceDefaults.Archival.History.State = "disabled"
	cfg.NamespaceDefaults.Archival.Visibility.State = "disabled"
	cfg.PublicClient.HostPort = frontend
	return cfg
}

// serverOptions wires the configuration, static membership (no ringpop: one
// process knows where everything is), the logger, the no-op authorizer that
// the configuration implies, and the dynamic configuration.
func serverOptions(cfg *config.Config, logger log.Logger, frontend string, internal map[string]int) ([]temporal.ServerOption, error) {
	authorizer, err := authorization.GetAuthorizerFromConfig(&cfg.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("authorizer: %w", err)
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&cfg.Global.Authorization, logger)
	if err != nil {
		return nil, fmt.Errorf("claim mapper: %w", err)
	}
	hosts := map[primitives.ServiceName]static.Hosts{
		primitives.FrontendService: static.SingleLocalHost(frontend),
	}
	for svc, p := range internal {
		hosts[primitives.ServiceName(svc)] = static.SingleLocalHost(net.JoinHostPort(loopback, strconv.Itoa(p)))
	}
	return []temporal.ServerOption{
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			// Search attributes added at start are visible to the very next
			// query instead of after a cache refresh.
			dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): true,
			// The one history shard reads its transfer queue (every
			// workflow and activity task on its way to matching) at most
			// transferPollRPS times a second; at the default 20 a run's
			// tasks drained the burst within a few runs and then waited
			// ~47 ms each for the limiter.
			dynamicconfig.TransferProcessorMaxPollRPS.Key(): transferPollRPS,
		}),
	}, nil
}

// newUI configures the web UI for the frontend at frontend, opening on
// namespace. News fetching is off: a NAS should not call out on its own.
func newUI(host string, port int, frontend, namespace string) *uiserver.Server {
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		host = "[" + host + "]" // the UI server formats "host:port" itself
	}
	return uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
		Host:                host,
		Port:                port,
		TemporalGRPCAddress: frontend,
		EnableUI:            true,
		DefaultNamespace:    namespace,
		CORS:                uiconfig.CORS{CookieInsecure: true},
		HideLogs:            true,
		DisableNewsFetch:    true,
	}))
}
