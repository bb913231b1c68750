//! `connector-agent`: see `connector-agent --help` and the crate docs.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use connector_agent::cli::Cli;
use connector_agent::config::{self, ConfigError, ENV_KEYS};
use connector_agent::ops::LockError;
use connector_agent::run::{self, AgentError, RunOptions};

/// Exit codes: 0 done, 1 runtime failure, 2 configuration error, 3 another instance runs.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<ConfigError>().is_some() {
        return 2;
    }
    match e.downcast_ref::<AgentError>() {
        // An unusable handler directory or run-as user is a configuration problem too.
        Some(AgentError::Config(_) | AgentError::Handlers(_)) => 2,
        Some(AgentError::Lock(LockError::Held { .. })) => 3,
        _ => 1,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match agent(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "connector-agent: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn agent(cli: Cli) -> anyhow::Result<()> {
    if cli.help_env {
        for (key, _) in ENV_KEYS {
            let _ = writeln!(std::io::stdout(), "{:<48} {key}", config::env_var_for(key));
        }
        return Ok(());
    }
    let overrides = cli.overrides();
    let mut settings = config::load_from_process(cli.config.as_deref(), &overrides)?;
    if cli.demo {
        connector_agent::demo::prepare(&mut settings)?;
    }
    if cli.check_config {
        run::check_handlers(&settings)?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", settings.describe());
        for w in &settings.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        return Ok(());
    }
    let log = connector_agent::logging::init(&settings.logging.level, settings.logging.json);
    let opts = RunOptions { exit_after: cli.exit_after, overrides, log, demo: cli.demo };
    let system = actix_rt::System::new();
    system.block_on(run::run(settings, opts))?;
    Ok(())
}
