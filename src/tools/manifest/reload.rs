//! `tools/` into the registry: loaded at startup, reloaded whenever the directory changes. A
//! valid change is swapped in whole; a broken manifest is reported (file, line, field) while
//! the last good version of that file keeps serving, and so is one too long for the per-tool
//! budget; a change that would break a profile's budget is refused whole.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use super::{ManifestError, load_dir, tool::Backends, tool::ManifestTool};
use crate::{
    config::ToolsConfig,
    jobs::runner::JobRunner,
    tools::{Catalog, Registry, Services, Tool, listing::tokens, registry::register_handlers},
};

/// Changes arriving this close together are one reload (editors write files in steps).
const SETTLE: Duration = Duration::from_millis(200);

/// What one look at the directory found.
#[derive(Debug)]
pub struct Loaded {
    pub catalog: Catalog,
    /// Manifests that did not load; the previous version of each keeps serving, if any.
    pub errors: Vec<ManifestError>,
    /// Everything else worth telling the operator (profiles naming missing tools…).
    pub warnings: Vec<String>,
    good: BTreeMap<PathBuf, Arc<ManifestTool>>,
}

#[derive(Debug)]
pub struct Loader {
    config: ToolsConfig,
    services: Arc<Services>,
    backends: Backends,
    builtin: Vec<Arc<dyn Tool>>,
    /// The manifests being served, by file: what a broken edit of that file falls back to.
    serving: Mutex<BTreeMap<PathBuf, Arc<ManifestTool>>>,
}

impl Loader {
    pub fn new(
        config: ToolsConfig,
        services: Arc<Services>,
        backends: Backends,
        builtin: Vec<Arc<dyn Tool>>,
    ) -> Loader {
        Loader { config, services, backends, builtin, serving: Mutex::default() }
    }

    /// Reads `tools/` and builds the catalog it describes, without serving it yet.
    pub fn load(&self) -> Loaded {
        let (manifests, mut errors) = load_dir(&self.config.dir);
        let serving = self.serving.lock().expect("serving lock poisoned").clone();
        let mut good = BTreeMap::new();
        for manifest in manifests {
            let name = manifest.name().to_owned();
            if self.builtin.iter().any(|tool| *tool.definition().name == name) {
                errors.push(ManifestError {
                    path: manifest.path().to_owned(),
                    line: Some(1),
                    field: Some("name".to_owned()),
                    message: format!("`{name}` is the name of a built-in tool; choose another"),
                });
                continue;
            }
            let path = manifest.path().to_owned();
            let tool = ManifestTool::new(manifest, self.services.clone(), self.backends.clone());
            // Too long for any profile: held back like a broken manifest (the previous version
            // keeps serving), so that adding a tool never stops a working server.
            let (tokens, limit) =
                (tokens::of_definition(tool.definition()), self.config.budgets.per_tool);
            if tokens > limit {
                errors.push(ManifestError {
                    path,
                    line: None,
                    field: Some("description".to_owned()),
                    message: format!(
                        "{tokens} tokens, over the per-tool budget of {limit}, so it is not \
                         served: shorten its description or its parameters' descriptions, or \
                         raise per_tool under [tools.budgets]"
                    ),
                });
                continue;
            }
            good.insert(path, Arc::new(tool));
        }
        for error in &errors {
            if let Some(previous) = serving.get(&error.path) {
                good.entry(error.path.clone()).or_insert_with(|| previous.clone());
            }
        }
        let manifests = good.values().map(|tool| tool.clone() as Arc<dyn Tool>).collect();
        let (catalog, warnings) = Catalog::new(self.builtin.clone(), manifests, &self.config);
        Loaded { catalog, errors, warnings, good }
    }

    /// Makes `loaded` the served set: the first load at startup, before the runner starts.
    pub fn commit(&self, loaded: &Loaded) {
        *self.serving.lock().expect("serving lock poisoned") = loaded.good.clone();
    }

    /// Loads again and, when the result is within budget, swaps it in and points the runner at
    /// the new job handlers. Returns what was refused or broken, for the log and for tests.
    pub fn reload(&self, registry: &Registry, runner: &JobRunner) -> Vec<String> {
        let loaded = self.load();
        let mut problems: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        problems.extend(loaded.warnings.iter().cloned());
        let over = loaded.catalog.budget_problems(&self.config.budgets);
        if !over.is_empty() {
            problems.extend(over.into_iter().map(|problem| format!("reload refused: {problem}")));
            return problems;
        }
        let previous = registry.catalog();
        register_handlers(runner, &loaded.catalog, Some(&previous));
        self.commit(&loaded);
        registry.replace(loaded.catalog);
        problems
    }

    /// Reloads on every change to the directory until shutdown. Without the directory there
    /// is nothing to watch (create it and restart).
    pub fn watch(
        self: Arc<Self>,
        registry: Arc<Registry>,
        runner: JobRunner,
        shutdown: CancellationToken,
    ) {
        let (sender, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|event| !event.kind.is_access()) {
                let _ = sender.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(error) => return tracing::warn!(%error, "cannot watch the tools directory"),
        };
        if let Err(error) = watcher.watch(&self.config.dir, RecursiveMode::NonRecursive) {
            let dir = self.config.dir.display();
            return tracing::info!(%error, "not watching {dir} for tool changes");
        }
        tokio::spawn(async move {
            // Owned here: dropping the watcher stops the notifications.
            let _watcher = watcher;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    change = changes.recv() => if change.is_none() { return },
                }
                tokio::time::sleep(SETTLE).await;
                while changes.try_recv().is_ok() {}
                // Reading and compiling manifests is file I/O and CPU: off the async workers.
                let (loader, registry_now, runner_now) =
                    (self.clone(), registry.clone(), runner.clone());
                let reloaded =
                    tokio::task::spawn_blocking(move || loader.reload(&registry_now, &runner_now));
                let Ok(problems) = reloaded.await else { continue };
                for problem in &problems {
                    tracing::error!("{problem}");
                }
                registry.set_problems(problems);
                tracing::info!(tools = ?registry.catalog().names(registry.catalog().default_profile()), "tools reloaded");
            }
        });
    }
}
