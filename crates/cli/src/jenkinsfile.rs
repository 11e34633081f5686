//! `gate jenkinsfile`: a declarative Jenkinsfile (or a Jenkins Job Builder template) that
//! runs each stage as `gate stage NAME` — allocate, connect and cleanup on the controller
//! side, the rest on the node the `connect` stage registers — with the state dir stashed
//! between nodes, `post { always { archive; cleanup } }`, JUnit results and archived
//! artifacts. See docs/jenkins.md.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use gate_core::Stage;

use crate::args::ConfigArgs;
use crate::commands::{Failure, Outcome, exit};
use crate::config::GateConfig;

/// The stash holding the state dir.
pub const STATE_STASH: &str = "gate-state";
/// The stash holding the `gate` binary for the node.
pub const BIN_STASH: &str = "gate-bin";

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A declarative Jenkinsfile.
    Jenkinsfile,
    /// A Jenkins Job Builder YAML template of a pipeline job that runs the Jenkinsfile.
    Jjb,
}

/// `gate jenkinsfile`.
#[derive(Debug, Clone, Args)]
pub struct JenkinsfileArgs {
    /// Where the config comes from (its path becomes the GATE_CONFIG parameter's default).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// What to write.
    #[arg(long, value_enum, default_value = "jenkinsfile")]
    pub format: Format,
    /// The label of the controller-side agents that run allocate, connect and cleanup.
    #[arg(long, value_name = "LABEL", default_value = "gate-controller")]
    pub controller_label: String,
    /// Write here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// A job parameter taken from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Knob {
    /// The parameter (and environment variable) name.
    name: String,
    /// The dotted config key it sets with `--set`.
    key: String,
    /// Its default: the config's value.
    default: String,
}

/// Environment names a knob must not take: Jenkins and the shell set them.
const RESERVED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "SHELL",
    "PWD",
    "WORKSPACE",
    "NODE_NAME",
    "NODE_LABELS",
    "JOB_NAME",
    "BUILD_NUMBER",
    "BUILD_ID",
    "BUILD_URL",
    "JENKINS_URL",
    "EXECUTOR_NUMBER",
    "GATE_CONFIG",
    "GATE_SETS",
    "GATE_BIN",
    "GATE_NODE",
    "GATE_COMMAND",
    "KEEP_HOSTS",
    "CONTROLLER_LABEL",
];

/// The config's main knobs: `provider.hosts` and the deployer's plain `env` values.
fn knobs(config: &GateConfig) -> Vec<Knob> {
    let tree = &config.redacted;
    let mut knobs = Vec::new();
    if let Some(hosts) = tree["provider"]["hosts"].as_u64() {
        knobs.push(Knob {
            name: "HOSTS".into(),
            key: "provider.hosts".into(),
            default: hosts.to_string(),
        });
    }
    if let Some(env) = tree["deployer"]["env"].as_object() {
        for (name, value) in env {
            let plain = match value {
                serde_json::Value::String(s) if s != gate_core::secret::MASK => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            let usable = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && !RESERVED.contains(&name.as_str())
                && !knobs.iter().any(|k: &Knob| &k.name == name);
            if usable {
                knobs.push(Knob {
                    name: name.clone(),
                    key: format!("deployer.env.{name}"),
                    default: plain,
                });
            }
        }
    }
    knobs
}

/// `text` as a single-quoted Groovy string.
fn groovy(text: &str) -> String {
    format!(
        "'{}'",
        text.replace('\\', "\\\\")
            .replace('\'', "\\'")
            .replace('\n', "\\n")
    )
}

/// What the Jenkinsfile is generated from.
#[derive(Debug, Clone)]
pub struct Plan {
    config_path: String,
    state_dir: String,
    artifacts_dir: String,
    controller_label: String,
    knobs: Vec<Knob>,
    has_agent: bool,
}

impl Plan {
    /// The plan for `config` (read from `config_path`).
    pub fn new(config: &GateConfig, config_path: &str, controller_label: &str) -> Self {
        let dir = |p: &std::path::Path| {
            p.display()
                .to_string()
                .trim_end_matches('/')
                .trim_start_matches("./")
                .to_owned()
        };
        Self {
            config_path: config_path.to_owned(),
            state_dir: dir(&config.run.state_dir),
            artifacts_dir: dir(&config.run.artifacts_dir),
            controller_label: controller_label.to_owned(),
            knobs: knobs(config),
            has_agent: config
                .agents()
                .iter()
                .any(|s| s.backend() == gate_agents::NAME),
        }
    }

    /// The body of the shell script that runs `gate $GATE_COMMAND` with the job's config,
    /// `--set` lines and knobs. Values reach it through the environment only.
    fn runner(&self) -> String {
        let mut s = String::from(
            "#!/bin/bash\nset -euo pipefail\nargs=(-c \"$GATE_CONFIG\")\nwhile IFS= read -r line; do\n    [ -z \"$line\" ] || args+=(--set \"$line\")\ndone <<< \"${GATE_SETS:-}\"\n",
        );
        for knob in &self.knobs {
            let _ = writeln!(s, "args+=(--set \"{}=${}\")", knob.key, knob.name);
        }
        s.push_str("exec \"${GATE_BIN:-gate}\" $GATE_COMMAND \"${args[@]}\"\n");
        s
    }

    /// The declarative Jenkinsfile.
    pub fn jenkinsfile(&self) -> String {
        let state = &self.state_dir;
        let artifacts = &self.artifacts_dir;
        let state_glob = groovy(&format!("{state}/**"));
        let node_file = groovy(&format!("{state}/{}", gate_agents::NODE_FILE));
        let mut f = String::new();
        let _ = writeln!(
            f,
            "// Generated by `gate jenkinsfile`: every gate stage is its own `gate stage` process.\n\
             // allocate, connect and cleanup run on the controller side (label CONTROLLER_LABEL);\n\
             // the other stages run on the node `connect` registers, named in {state}/{}.\n\
             // The state dir ({state}/) travels between nodes as the stash `{STATE_STASH}`, the gate\n\
             // binary as `{BIN_STASH}`. Regenerate with `gate jenkinsfile -c {} > Jenkinsfile`.\n",
            gate_agents::NODE_FILE,
            self.config_path
        );
        if !self.has_agent {
            f.push_str(
                "// The config has no `jenkins` [agent]: every stage runs on CONTROLLER_LABEL.\n\n",
            );
        }
        let _ = writeln!(
            f,
            "// Runs `gate <command>` with the job's config, --set lines and knobs. Values reach\n\
             // the shell through the environment, never pasted into the script.\n\
             def gate(String command) {{\n    withEnv([\"GATE_COMMAND=${{command}}\"]) {{\n        sh label: \"gate ${{command}}\", script: '''{}'''\n    }}\n}}\n",
            self.runner()
        );
        let _ = writeln!(
            f,
            "// The state dir, unstashed when an earlier stage left one.\ndef takeState() {{\n    try {{\n        unstash '{STATE_STASH}'\n    }} catch (err) {{\n        echo \"no state dir yet: ${{err}}\"\n    }}\n}}\n\n\
             def keepState() {{\n    stash name: '{STATE_STASH}', includes: {state_glob}, allowEmpty: true\n}}\n\n\
             // gate on the node: the binary the controller side stashed.\ndef useGateBinary() {{\n    unstash '{BIN_STASH}'\n    env.GATE_BIN = \"${{env.WORKSPACE}}/gate-bin/gate\"\n}}\n"
        );
        f.push_str("pipeline {\n    agent none\n    options {\n        disableConcurrentBuilds()\n    }\n    parameters {\n");
        let _ = writeln!(
            f,
            "        string(name: 'GATE_CONFIG', defaultValue: {}, description: 'the gate config file, relative to the checkout')",
            groovy(&self.config_path)
        );
        let _ = writeln!(
            f,
            "        text(name: 'GATE_SETS', defaultValue: '', description: 'extra config overrides, one KEY=VALUE a line (gate --set)')"
        );
        let _ = writeln!(
            f,
            "        string(name: 'CONTROLLER_LABEL', defaultValue: {}, description: 'agents that run allocate, connect and cleanup')",
            groovy(&self.controller_label)
        );
        let _ = writeln!(
            f,
            "        booleanParam(name: 'KEEP_HOSTS', defaultValue: false, description: 'skip cleanup (free the hosts later with gate cleanup)')"
        );
        for knob in &self.knobs {
            let _ = writeln!(
                f,
                "        string(name: '{}', defaultValue: {}, description: {})",
                knob.name,
                groovy(&knob.default),
                groovy(&format!("config {}", knob.key))
            );
        }
        f.push_str("    }\n    stages {\n");
        let _ = writeln!(
            f,
            "        stage('allocate') {{\n            agent {{ label params.CONTROLLER_LABEL }}\n            steps {{\n                gate('stage allocate')\n                sh 'mkdir -p gate-bin && cp \"$(command -v gate)\" gate-bin/gate'\n                stash name: '{BIN_STASH}', includes: 'gate-bin/gate'\n            }}\n            post {{ always {{ keepState() }} }}\n        }}"
        );
        let _ = writeln!(
            f,
            "        stage('connect') {{\n            agent {{ label params.CONTROLLER_LABEL }}\n            steps {{\n                takeState()\n                gate('stage connect')\n                script {{\n                    if (fileExists({node_file})) {{\n                        env.GATE_NODE = readFile({node_file}).trim()\n                    }}\n                }}\n            }}\n            post {{ always {{ keepState() }} }}\n        }}"
        );
        let node_stages: Vec<Stage> = Stage::ALL
            .into_iter()
            .filter(|s| {
                !matches!(
                    s,
                    Stage::Allocate | Stage::Connect | Stage::Archive | Stage::Cleanup
                )
            })
            .collect();
        f.push_str(
            "        stage('on the node') {\n            agent { label \"${env.GATE_NODE ?: params.CONTROLLER_LABEL}\" }\n            stages {\n",
        );
        for (i, stage) in node_stages.iter().enumerate() {
            let first = if i == 0 {
                "                        takeState()\n                        useGateBinary()\n"
            } else {
                ""
            };
            let _ = writeln!(
                f,
                "                stage('{name}') {{\n                    steps {{\n{first}                        gate('stage {name}')\n                    }}\n                }}",
                name = stage.name()
            );
        }
        f.push_str(
            "            }\n            post { always { keepState() } }\n        }\n    }\n",
        );
        let _ = writeln!(
            f,
            "    post {{\n        always {{\n            script {{\n                // archive where the hosts were worked on; it always runs.\n                node(env.GATE_NODE ?: params.CONTROLLER_LABEL) {{\n                    takeState()\n                    if (env.GATE_NODE) {{\n                        useGateBinary()\n                    }}\n                    catchError(buildResult: 'FAILURE', stageResult: 'FAILURE') {{\n                        gate('stage archive')\n                    }}\n                    junit testResults: '{artifacts}/results/*.xml', allowEmptyResults: true\n                    archiveArtifacts artifacts: '{artifacts}/**', allowEmptyArchive: true\n                    keepState()\n                }}\n                // cleanup on the controller side: it deletes the node this build ran on.\n                node(params.CONTROLLER_LABEL) {{\n                    takeState()\n                    if (params.KEEP_HOSTS) {{\n                        echo 'KEEP_HOSTS: resources kept; free them with gate cleanup'\n                    }} else {{\n                        gate('stage cleanup')\n                    }}\n                    archiveArtifacts artifacts: '{artifacts}/report.html, {artifacts}/run.json', allowEmptyArchive: true\n                }}\n            }}\n        }}\n    }}\n}}"
        );
        f
    }

    /// A Jenkins Job Builder template: a parameterized pipeline job running the
    /// Jenkinsfile from the project's repository.
    pub fn jjb(&self) -> String {
        let mut y = String::from(
            "# Generated by `gate jenkinsfile --format jjb`: a pipeline job running the gate\n# Jenkinsfile from the project's repository. Instantiate it with a `project`.\n- job-template:\n    name: 'gate-{name}'\n    project-type: pipeline\n    concurrent: false\n    parameters:\n",
        );
        let param = |y: &mut String, kind: &str, name: &str, default: &str, description: &str| {
            let _ = write!(
                y,
                "      - {kind}:\n          name: {name}\n          default: '{}'\n          description: '{}'\n",
                default.replace('\'', "''"),
                description.replace('\'', "''")
            );
        };
        param(
            &mut y,
            "string",
            "GATE_CONFIG",
            &self.config_path,
            "the gate config file, relative to the checkout",
        );
        param(
            &mut y,
            "text",
            "GATE_SETS",
            "",
            "extra config overrides, one KEY=VALUE a line (gate --set)",
        );
        param(
            &mut y,
            "string",
            "CONTROLLER_LABEL",
            &self.controller_label,
            "agents that run allocate, connect and cleanup",
        );
        y.push_str("      - bool:\n          name: KEEP_HOSTS\n          default: false\n          description: 'skip cleanup (free the hosts later with gate cleanup)'\n");
        for knob in &self.knobs {
            param(
                &mut y,
                "string",
                &knob.name,
                &knob.default,
                &format!("config {}", knob.key),
            );
        }
        y.push_str(
            "    pipeline-scm:\n      scm:\n        - git:\n            url: '{git-url}'\n            branches:\n              - '{branch}'\n      script-path: '{jenkinsfile}'\n      lightweight-checkout: true\n\n- project:\n    name: gate\n    git-url: https://git.example/your/project.git\n    branch: main\n    jenkinsfile: Jenkinsfile\n    jobs:\n      - 'gate-{name}':\n          name: gate\n",
        );
        y
    }
}

/// `gate jenkinsfile`.
pub fn jenkinsfile(args: &JenkinsfileArgs) -> Outcome {
    let config = GateConfig::load(&args.config).map_err(Failure::usage)?;
    let path = args
        .config
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "gate.toml".into());
    let plan = Plan::new(&config, &path, &args.controller_label);
    let text = match args.format {
        Format::Jenkinsfile => plan.jenkinsfile(),
        Format::Jjb => plan.jjb(),
    };
    match &args.output {
        Some(file) => std::fs::write(file, text)
            .map_err(|e| Failure::usage(format!("writing {}: {e}", file.display())))?,
        None => print!("{text}"),
    }
    Ok(exit::OK)
}
