//! Several agents for one run: `[[agent]]` tables in the config, connected in order.

use async_trait::async_trait;
use gate_core::{AgentConnector, Backend, Result, StageContext};

/// Connects every agent in order (e.g. a Jenkins node, then monitoring checks); the first
/// failure ends the stage. Each agent writes its own resources to the ledger, so cleanup
/// frees what the ones before a failure made.
#[derive(Debug)]
pub struct AgentChain {
    agents: Vec<Backend<dyn AgentConnector>>,
}

impl AgentChain {
    /// A chain of `agents`, connected in this order.
    pub fn new(agents: Vec<Backend<dyn AgentConnector>>) -> Self {
        Self { agents }
    }

    /// The agents' registry names joined with `+` (`jenkins+monitoring`), for the plan.
    pub fn name(&self) -> String {
        let names: Vec<&str> = self.agents.iter().map(|a| a.name.as_str()).collect();
        names.join("+")
    }
}

#[async_trait]
impl AgentConnector for AgentChain {
    async fn connect(&self, cx: &StageContext) -> Result<()> {
        for agent in &self.agents {
            tracing::info!(agent = %agent.name, "connecting");
            agent.imp.connect(cx).await?;
        }
        Ok(())
    }
}
