//! Composition root: builds the store, provider, runner, tools and MCP state from a [`Config`],
//! serves HTTP (and optionally stdio), and shuts everything down in order.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use rmcp::ServiceExt;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::{
    config::{Config, DEFAULT_PROFILE, Database, ToolsConfig, inherited_env},
    http::ConnectionLimits,
    images::{
        fetch::{FetchLimits, ImageFetcher},
        files::ImageFiles,
        pipeline::{ImagePipeline, ImagePool, PipelineBuildError, PoolError},
    },
    jobs::{
        postgres::PgJobStore,
        runner::JobRunner,
        sqlite::SqliteJobStore,
        store::{JobStore, StoreError},
    },
    mcp::{McpState, OffstageServer, Subscriptions},
    netguard,
    providers::{
        Context, Parsing, SetupError,
        router::{Backoff, Router},
        threads::ProviderThreads,
    },
    push::{Composer, webhooks::Dispatcher},
    tools::{
        self, Links, Registry, Services,
        listing::budget::OVER_BUDGET_HELP,
        manifest::{
            INHERITED_ENV,
            reload::{Loaded, Loader},
            tool::{Backends, EnvSecretSource},
        },
        registry::register_handlers,
    },
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] SetupError),
    #[error("cannot prepare {what}: {source}")]
    Io { what: &'static str, source: io::Error },
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    #[error("stdio transport failed: {0}")]
    Stdio(String),
    #[error("cannot start the image pipeline: {0}")]
    Pipeline(#[from] PipelineBuildError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("tool definitions over budget (see `offstage tools check`):\n{0}")]
    OverBudget(String),
}

/// A running server. Dropping it without [`Server::stop`] leaves jobs to lease recovery.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    core: Core,
    http: JoinHandle<()>,
}

/// Everything behind the transports, shared by HTTP and stdio.
#[derive(Debug)]
struct Core {
    store: Store,
    runner: JobRunner,
    mcp: Arc<McpState>,
    shutdown: CancellationToken,
}

impl Server {
    /// Binds `config.listen`, builds everything and starts serving. Returns once accepting.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind { addr: config.listen, source })?;
        Server::start_on(config, listener).await
    }

    async fn start_on(config: Config, listener: TcpListener) -> Result<Server, StartError> {
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartError::Io { what: "the listener", source })?;
        let links = Links::new(public_base(&config, local_addr));
        let core = Core::build(&config, links).await?;
        let app = crate::http::router(core.mcp.clone(), &config, &core.shutdown);
        let open_files = raise_open_file_limit();
        let limits = ConnectionLimits {
            max_connections: config.limits.connection_cap(open_files),
            // Refusals use descriptors too: a sixteenth of the limit, within the quarter the
            // cap leaves for them, the store and outgoing calls.
            max_refusing: usize::try_from(open_files / 16).unwrap_or(64).clamp(4, 64),
            header_timeout: *config.limits.header_timeout,
            idle_timeout: *config.limits.idle_timeout,
        };
        tracing::debug!(open_files, max_connections = limits.max_connections, "connection cap");
        let shutdown = core.shutdown.clone();
        let http = tokio::spawn(crate::http::serve(listener, app, limits, shutdown));
        tracing::info!(
            mcp = %format!("http://{local_addr}/mcp"),
            data_dir = %config.data_dir.display(),
            providers = %config.route().iter().map(|step| step.provider).collect::<Vec<_>>().join(" > "),
            "offstage is serving"
        );
        Ok(Server { local_addr, core, http })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn mcp_url(&self) -> String {
        format!("http://{}/mcp", self.local_addr)
    }

    /// Serves MCP on stdin/stdout until the client closes it, then stops the server.
    pub async fn serve_stdio(self) -> Result<(), StartError> {
        let handler = OffstageServer::new(self.core.mcp.clone());
        let running = handler
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|error| StartError::Stdio(error.to_string()))?;
        let quit = running.waiting().await;
        tracing::info!(?quit, "stdio client went away");
        self.stop().await;
        Ok(())
    }

    /// Stops accepting, ends open streams, stops jobs (they resume on the next start), closes
    /// the store.
    pub async fn stop(self) {
        self.core.shutdown.cancel();
        self.core.runner.shutdown().await;
        // Open SSE streams end with the shutdown token; don't let a stuck one hold us forever.
        match tokio::time::timeout(Duration::from_secs(10), self.http).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "HTTP server task failed"),
            Err(_elapsed) => tracing::warn!("HTTP server did not stop within 10 s"),
        }
        self.core.store.close().await;
    }
}

/// Starts the server for the stdio transport. Image URLs need an HTTP listener; when the
/// configured port is taken (say by a running `offstage serve`) an ephemeral one is used.
pub async fn start_for_stdio(config: Config) -> Result<Server, StartError> {
    let listener = match TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(error) if error.kind() == io::ErrorKind::AddrInUse => {
            let fallback = SocketAddr::new(config.listen.ip(), 0);
            tracing::warn!(addr = %config.listen, "port in use; serving images on an ephemeral port");
            TcpListener::bind(fallback)
                .await
                .map_err(|source| StartError::Bind { addr: fallback, source })?
        }
        Err(source) => return Err(StartError::Bind { addr: config.listen, source }),
    };
    Server::start_on(config, listener).await
}

/// The tools a server with this configuration would serve, and what did not load, found
/// without serving anything (for `offstage tools check` and `export`). The job store and image
/// store it needs to build them live in a scratch directory, removed afterwards: inspecting
/// tools never touches the configured database or bucket.
pub async fn inspect_tools(config: &Config) -> Result<Loaded, StartError> {
    let scratch = std::env::temp_dir().join(format!("offstage-tools-{}", ulid::Ulid::generate()));
    let mut config = config.clone();
    config.data_dir = scratch.clone();
    config.database = Database::Sqlite(scratch.join("offstage.db"));
    config.images.store = None;
    let links = Links::new(Url::parse("http://127.0.0.1/").expect("static URL"));
    let inspected = async {
        std::fs::create_dir_all(&scratch)
            .map_err(|source| StartError::Io { what: "a scratch directory", source })?;
        let (store, _runner, services) = Core::services(&config, links).await?;
        let loader = Core::loader(&config, &services)?;
        let loaded = loader.load();
        store.close().await;
        Ok(loaded)
    }
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    inspected
}

impl Core {
    /// The store, runner (not started) and what tools share.
    async fn services(
        config: &Config,
        links: Links,
    ) -> Result<(Store, JobRunner, Arc<Services>), StartError> {
        let store = Store::open(&config.database).await?;
        // Unguarded on purpose: provider URLs come from the operator's configuration, never
        // from a model, and a ComfyUI on loopback or the LAN is the usual case. netguard is
        // for the URLs users and models supply.
        let http_client = reqwest::Client::builder()
            .user_agent(concat!("offstage/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| StartError::HttpClient(error.to_string()))?;
        // One pool for all pixel work: providers parsing answers and the image pipeline.
        let pool = ImagePool::new(config.images.worker_count(), config.images.queue)?;
        // Provider calls (answers of megabytes) run on threads of their own, below requests.
        let threads = ProviderThreads::start()
            .map_err(|source| StartError::Io { what: "the provider threads", source })?;
        let context = Context { http: http_client, parsing: Parsing::on(pool.clone()) };
        let backoff = Backoff { base: *config.jobs.retry_base, max: *config.jobs.retry_max };
        let router = Arc::new(
            Router::build(&config.route(), &config.providers, backoff, &context)?
                .running_on(threads),
        );
        let fetcher = ImageFetcher::new(FetchLimits {
            allow_private: config.tools.allow_private,
            private_allowlist: config.tools.image_hosts.clone(),
            ..FetchLimits::default()
        })
        .map_err(|error| StartError::HttpClient(error.to_string()))?;
        let images = ImageFiles::from_config(&config.images, &config.data_dir)
            .await
            .map_err(|source| StartError::Io { what: "the images directory", source })?;
        let pipeline = ImagePipeline::new(&config.images, images, pool)?;
        let job_store = store.shared();
        let composer = Arc::new(Composer::new(links.clone(), &config.push));
        let runner =
            JobRunner::builder(job_store.clone(), config.jobs.clone()).composer(composer).build();
        let services = Arc::new(Services {
            runner: runner.clone(),
            links,
            router,
            pipeline,
            fetcher,
            push: config.push.clone(),
            reply_within: *config.tools.reply_within,
        });
        Ok((store, runner, services))
    }

    fn loader(config: &Config, services: &Arc<Services>) -> Result<Loader, StartError> {
        let backends = manifest_backends(&config.tools)?;
        Ok(Loader::new(
            config.tools.clone(),
            services.clone(),
            backends,
            tools::builtin::all(services),
        ))
    }

    async fn build(config: &Config, links: Links) -> Result<Core, StartError> {
        let (store, runner, services) = Core::services(config, links).await?;
        let job_store = runner.store().clone();
        let loader = Arc::new(Core::loader(config, &services)?);
        let loaded = loader.load();
        for error in &loaded.errors {
            tracing::error!("{error}");
        }
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        let over = loaded.catalog.budget_problems(&config.tools.budgets);
        if !over.is_empty() {
            return Err(StartError::OverBudget(format!("{}\n{OVER_BUDGET_HELP}", over.join("\n"))));
        }
        // Where the budget rule put each manifest tool; one that found no room is worth a look.
        for placement in loaded.catalog.placements() {
            if placement.profile == DEFAULT_PROFILE {
                tracing::info!("{placement}");
            } else {
                tracing::warn!("{placement}");
            }
        }
        loader.commit(&loaded);
        // Before the runner starts: interrupted jobs resume only into registered lanes.
        register_handlers(&runner, &loaded.catalog, None);
        let registry = Arc::new(Registry::new(loaded.catalog));
        let problems = loaded.errors.iter().map(ToString::to_string);
        registry.set_problems(problems.chain(loaded.warnings.iter().cloned()).collect());
        let shutdown = CancellationToken::new();
        let subscriptions =
            Arc::new(Subscriptions::new(services.links.clone(), *config.jobs.retention));
        subscriptions.spawn_notifier(&runner, shutdown.clone());
        Dispatcher::new(&config.push, job_store)
            .map_err(|error| StartError::HttpClient(error.to_string()))?
            .spawn(runner.events(), shutdown.clone());
        if config.tools.watch {
            loader.watch(registry.clone(), runner.clone(), shutdown.clone());
        }
        let mcp = Arc::new(McpState::new(registry, services, subscriptions, shutdown.clone()));
        runner.start().await?;
        Ok(Core { store, runner, mcp, shutdown })
    }
}

/// The job store the configuration names.
#[derive(Debug)]
enum Store {
    Sqlite(SqliteJobStore),
    Postgres(PgJobStore),
}

impl Store {
    async fn open(database: &Database) -> Result<Store, StoreError> {
        Ok(match database {
            Database::Sqlite(path) => Store::Sqlite(SqliteJobStore::open(path).await?),
            Database::Postgres(url) => {
                let store = PgJobStore::open(url).await?;
                tracing::info!(database = %crate::config::redacted(url), "job store: PostgreSQL");
                Store::Postgres(store)
            }
        })
    }

    fn shared(&self) -> Arc<dyn JobStore> {
        match self {
            Store::Sqlite(store) => Arc::new(store.clone()),
            Store::Postgres(store) => Arc::new(store.clone()),
        }
    }

    async fn close(&self) {
        match self {
            Store::Sqlite(store) => store.close().await,
            Store::Postgres(store) => store.close().await,
        }
    }
}

/// What manifest tools call through: the guarded HTTP client, secrets from the environment,
/// and the variables commands inherit.
fn manifest_backends(config: &ToolsConfig) -> Result<Backends, StartError> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("offstage/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .dns_resolver(netguard::GuardedResolver { allow_private: config.allow_private }.shared())
        .build()
        .map_err(|error| StartError::HttpClient(error.to_string()))?;
    Ok(Backends {
        client,
        secrets: Arc::new(EnvSecretSource(config.secrets.clone())),
        allow_private: config.allow_private,
        command_env: inherited_env(&INHERITED_ENV),
    })
}

/// `public_url` when set; otherwise the bound address, with a wildcard IP replaced by loopback
/// so the URL is fetchable from this machine.
/// Raises the soft open-file limit to the hard one (every connection is a descriptor), and
/// returns the limit in force.
fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not read or raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

fn public_base(config: &Config, bound: SocketAddr) -> Url {
    if let Some(url) = &config.public_url {
        return url.clone();
    }
    let ip = if bound.ip().is_unspecified() {
        tracing::warn!(
            "listening on all interfaces without public_url: image URLs will say 127.0.0.1"
        );
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        bound.ip()
    };
    let host = SocketAddr::new(ip, bound.port());
    Url::parse(&format!("http://{host}/")).expect("a socket address always forms a valid URL")
}
