//! `presence-gateway engine status|start|stop|restart [--node NAME]`: acts
//! through the store on the running service, whose node notices within its
//! poll interval, and reports what the node did.

use std::path::Path;
use std::time::Duration;

use crate::cli::{EngineArgs, EngineVerb};
use crate::error::{AppError, AppResult};
use crate::store;
use crate::store::engine::{Action, EngineState, NodeEngine};

/// Longest the command waits for the node to act (a restart takes a stop
/// and a start).
const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

/// Runs the command; Ok(false) when the node refused, failed or did not act.
pub async fn run(data_dir: &Path, database: Option<&str>, args: &EngineArgs) -> AppResult<bool> {
    let db = crate::config::existing_store(data_dir, database).map_err(AppError::Config)?;
    let pool = store::open_at(&db).await?;
    let nodes = store::engine::nodes(&pool).await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let generation = store::changes::current_generation(&pool).await?;
    let action = match args.verb {
        EngineVerb::Status => {
            let shown: Vec<&NodeEngine> = nodes
                .iter()
                .filter(|n| args.node.as_deref().is_none_or(|want| n.name == want))
                .collect();
            if shown.is_empty() {
                return Err(unknown_node(args.node.as_deref().unwrap_or(""), &nodes));
            }
            for node in shown {
                println!("{}", status_line(node, generation, now));
            }
            return Ok(true);
        }
        EngineVerb::Start => Action::Start,
        EngineVerb::Stop => Action::Stop,
        EngineVerb::Restart => Action::Restart,
    };
    let node = choose_node(args.node.as_deref(), &nodes)?;
    let actor = format!("{} (shell)", whoami());
    let id = store::engine::request(&pool, &node, action, &actor, now).await?;
    println!(
        "{} requested for the Presence Engine on {node}.",
        action.label()
    );
    for _ in 0..(WAIT.as_millis() / POLL.as_millis()) {
        if let Some(done) = store::engine::command(&pool, id).await?
            && done.done_at.is_some()
        {
            let outcome = done.outcome.unwrap_or_default();
            println!("{node}: {outcome}");
            if let Some(row) = store::engine::node(&pool, &node).await? {
                println!("{}", status_line(&row, generation, now));
            }
            return Ok(!(outcome.starts_with("Failed") || outcome.starts_with("Refused")));
        }
        tokio::time::sleep(POLL).await;
    }
    println!(
        "{node} has not acted on it within {} seconds: is its service running? The request \
         stays queued until it does.",
        WAIT.as_secs()
    );
    Ok(false)
}

/// The node named, or the only node, or this host's default node name.
fn choose_node(named: Option<&str>, nodes: &[NodeEngine]) -> AppResult<String> {
    if let Some(name) = named {
        return nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.name.clone())
            .ok_or_else(|| unknown_node(name, nodes));
    }
    if let [only] = nodes {
        return Ok(only.name.clone());
    }
    let here = crate::config::default_node_name();
    if nodes.iter().any(|n| n.name == here) {
        return Ok(here);
    }
    Err(AppError::Config(format!(
        "several nodes share this data directory ({}): choose one with --node",
        names(nodes)
    )))
}

fn unknown_node(name: &str, nodes: &[NodeEngine]) -> AppError {
    AppError::Config(format!(
        "no node named {name:?}; the nodes are: {}",
        names(nodes)
    ))
}

fn names(nodes: &[NodeEngine]) -> String {
    if nodes.is_empty() {
        return "none yet (start the service once)".to_owned();
    }
    nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn status_line(node: &NodeEngine, generation: i64, now: i64) -> String {
    let mut line = format!(
        "{}: {}{} since {}, generation {}",
        node.name,
        node.state().as_str(),
        node.engine_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        crate::clock::format_time(node.engine_since),
        node.engine_generation
    );
    if !node.activated {
        line.push_str(", deactivated");
    } else if node.engine_generation < generation && node.state() != EngineState::Stopped {
        line.push_str(&format!(
            ", restart pending (current generation {generation})"
        ));
    }
    if now - node.last_heartbeat > 35 {
        line.push_str(", no heartbeat for over 35 seconds");
    }
    line
}

fn whoami() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "shell".to_owned())
}
