//! The command line: `offstage serve`, `offstage stdio` and `offstage tools check|export`, with
//! the flags that override configuration. Parsing only; `main.rs` runs the result.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{ConfigSources, Overrides};

#[derive(Debug, Parser)]
#[command(name = "offstage", version, about = "An MCP tool server for realtime voice agents")]
pub struct Cli {
    /// Configuration file (default: ./offstage.toml when present).
    #[arg(long, global = true, env = "OFFSTAGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8787 or a bare port.
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Where jobs (offstage.db) and images are kept.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The job store shared by several instances, `postgres://user@host/db` (default: SQLite
    /// in the data dir).
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Image provider: auto, sketch or openai.
    #[arg(long, global = true, value_name = "NAME")]
    pub provider: Option<String>,
    /// Log filter, e.g. info or offstage=debug (logs go to stderr).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Serve MCP over Streamable HTTP at /mcp, plus the job views.
    Serve,
    /// Serve MCP over stdin/stdout for desktop clients (image URLs still served over HTTP).
    Stdio,
    /// Inspect the tools this configuration serves.
    #[command(subcommand)]
    Tools(ToolsCommand),
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ToolsCommand {
    /// Print every profile's tools with their token counts and warnings; exit 1 when a
    /// manifest is broken or a budget is exceeded.
    Check {
        /// Only this profile.
        #[arg(long)]
        profile: Option<String>,
        /// Print markdown tables instead of plain text.
        #[arg(long)]
        markdown: bool,
    },
    /// Print a profile's tool definitions, ready to paste into a realtime session.
    Export {
        /// openai-realtime (session.update tools), gemini-live (setup tools) or mcp (tools/list).
        #[arg(long)]
        format: String,
        /// The profile to export (default: the default profile).
        #[arg(long)]
        profile: Option<String>,
    },
}

impl Cli {
    pub fn sources(&self) -> ConfigSources {
        ConfigSources {
            config_file: self.config.clone(),
            overrides: Overrides {
                listen: self.listen.clone(),
                data_dir: self.data_dir.clone(),
                database_url: self.database_url.clone(),
                provider: self.provider.clone(),
                log: self.log.clone(),
            },
        }
    }
}
