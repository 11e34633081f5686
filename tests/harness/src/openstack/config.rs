//! The configuration files of the services, all on 127.0.0.1 and sqlite, under the run
//! directory.

use std::path::{Path, PathBuf};

/// The ports of one set of services (all on 127.0.0.1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    pub(crate) epmd: u16,
    pub(crate) amqp: u16,
    pub(crate) amqp_dist: u16,
    pub(crate) keystone: u16,
    pub(crate) placement: u16,
    pub(crate) glance: u16,
    pub(crate) nova: u16,
    pub(crate) heat: u16,
    pub(crate) neutron: u16,
}

/// Where everything of one run is, and the service users' password.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) dir: PathBuf,
    pub(crate) venv: PathBuf,
    pub(crate) ports: Ports,
    pub(crate) service_password: String,
}

impl Layout {
    /// `dir/sub`.
    pub(crate) fn path(&self, sub: &str) -> PathBuf {
        self.dir.join(sub)
    }

    /// A sqlite URL for a database file under `dir/db` (journal in WAL mode, set after the
    /// schema is made, so readers do not block the writer).
    pub(crate) fn sqlite(&self, name: &str) -> String {
        // A minute of busy timeout: Nova's services write to the same files at once.
        format!(
            "sqlite:///{}?timeout=60",
            self.dir.join("db").join(name).display()
        )
    }

    /// The identity URL given to clients.
    pub(crate) fn auth_url(&self) -> String {
        format!("http://127.0.0.1:{}/v3", self.ports.keystone)
    }

    /// The RabbitMQ URL of oslo.messaging.
    pub(crate) fn transport_url(&self) -> String {
        format!("rabbit://guest:guest@127.0.0.1:{}/", self.ports.amqp)
    }

    /// A program of the virtualenv.
    pub(crate) fn bin(&self, program: &str) -> PathBuf {
        self.venv.join("bin").join(program)
    }

    /// A file the venv installed under its `etc/`.
    fn venv_etc(&self, path: &str) -> PathBuf {
        self.venv.join("etc").join(path)
    }

    /// `keystone_authtoken` (and the like) for service user `user`.
    fn password_auth(&self, section: &str, user: &str) -> String {
        format!(
            "[{section}]\n\
             auth_type = password\n\
             auth_url = {auth}\n\
             www_authenticate_uri = {auth}\n\
             project_domain_name = Default\n\
             user_domain_name = Default\n\
             project_name = service\n\
             username = {user}\n\
             password = {password}\n\
             region_name = RegionOne\n",
            auth = self.auth_url(),
            password = self.service_password,
        )
    }

    pub(crate) fn keystone_conf(&self) -> String {
        format!(
            "[DEFAULT]\n\
             debug = false\n\
             [database]\n\
             connection = {db}\n\
             sqlite_synchronous = false\n\
             [token]\n\
             provider = fernet\n\
             [fernet_tokens]\n\
             key_repository = {fernet}\n\
             [credential]\n\
             key_repository = {credential}\n\
             [cache]\n\
             enabled = false\n\
             [identity]\n\
             password_hash_algorithm = bcrypt\n\
             password_hash_rounds = 4\n",
            db = self.sqlite("keystone.sqlite"),
            fernet = self.path("keystone/fernet-keys").display(),
            credential = self.path("keystone/credential-keys").display(),
        )
    }

    pub(crate) fn placement_conf(&self) -> String {
        format!(
            "[DEFAULT]\n\
             debug = false\n\
             [api]\n\
             auth_strategy = keystone\n\
             [placement_database]\n\
             connection = {db}\n\
             sqlite_synchronous = false\n\
             {auth}",
            db = self.sqlite("placement.sqlite"),
            auth = self.password_auth("keystone_authtoken", "placement"),
        )
    }

    pub(crate) fn glance_conf(&self) -> String {
        format!(
            "[DEFAULT]\n\
             debug = false\n\
             workers = 1\n\
             enabled_backends = fs:file\n\
             image_cache_dir = {cache}\n\
             [glance_store]\n\
             default_backend = fs\n\
             [fs]\n\
             filesystem_store_datadir = {images}\n\
             [os_glance_staging_store]\n\
             filesystem_store_datadir = {staging}\n\
             [os_glance_tasks_store]\n\
             filesystem_store_datadir = {tasks}\n\
             [database]\n\
             connection = {db}\n\
             sqlite_synchronous = false\n\
             [paste_deploy]\n\
             flavor = keystone\n\
             config_file = {paste}\n\
             [oslo_concurrency]\n\
             lock_path = {locks}\n\
             {auth}",
            cache = self.path("glance/cache").display(),
            images = self.path("glance/images").display(),
            staging = self.path("glance/staging").display(),
            tasks = self.path("glance/tasks").display(),
            db = self.sqlite("glance.sqlite"),
            paste = self.venv_etc("glance/glance-api-paste.ini").display(),
            locks = self.path("locks").display(),
            auth = self.password_auth("keystone_authtoken", "glance"),
        )
    }

    pub(crate) fn nova_conf(&self) -> String {
        format!(
            "[DEFAULT]\n\
             debug = false\n\
             compute_driver = fake.FakeDriver\n\
             transport_url = {transport}\n\
             host = gate-compute\n\
             my_ip = 127.0.0.1\n\
             state_path = {state}\n\
             instances_path = {state}/instances\n\
             osapi_compute_workers = 1\n\
             metadata_workers = 1\n\
             enabled_apis = osapi_compute\n\
             heal_instance_info_cache_interval = -1\n\
             [api_database]\n\
             connection = {api_db}\n\
             sqlite_synchronous = false\n\
             [database]\n\
             connection = {cell1_db}\n\
             sqlite_synchronous = false\n\
             [conductor]\n\
             workers = 1\n\
             [scheduler]\n\
             workers = 1\n\
             discover_hosts_in_cells_interval = -1\n\
             [quota]\n\
             instances = 50\n\
             cores = 100\n\
             ram = 204800\n\
             [wsgi]\n\
             api_paste_config = {paste}\n\
             [oslo_concurrency]\n\
             lock_path = {locks}\n\
             [oslo_messaging_notifications]\n\
             driver = noop\n\
             [vnc]\n\
             enabled = false\n\
             [cinder]\n\
             os_region_name = RegionOne\n\
             {authtoken}\
             {placement}\
             {neutron}\
             {service_user}\
             send_service_user_token = true\n",
            transport = self.transport_url(),
            state = self.path("nova").display(),
            api_db = self.sqlite("nova_api.sqlite"),
            cell1_db = self.sqlite("nova_cell1.sqlite"),
            paste = self.venv_etc("nova/api-paste.ini").display(),
            locks = self.path("locks").display(),
            authtoken = self.password_auth("keystone_authtoken", "nova"),
            placement = self.password_auth("placement", "nova"),
            neutron = self.password_auth("neutron", "nova"),
            service_user = self.password_auth("service_user", "nova"),
        )
    }

    pub(crate) fn heat_conf(&self) -> String {
        let auth = self.auth_url();
        format!(
            "[DEFAULT]\n\
             debug = false\n\
             transport_url = {transport}\n\
             host = gate-heat\n\
             num_engine_workers = 1\n\
             region_name_for_services = RegionOne\n\
             environment_dir = {environments}\n\
             template_dir = {templates}\n\
             heat_metadata_server_url = http://127.0.0.1:{heat}\n\
             heat_waitcondition_server_url = http://127.0.0.1:{heat}/v1/waitcondition\n\
             deferred_auth_method = trusts\n\
             [database]\n\
             connection = {db}\n\
             sqlite_synchronous = false\n\
             [paste_deploy]\n\
             api_paste_config = {paste}\n\
             [heat_api]\n\
             workers = 1\n\
             [clients_keystone]\n\
             auth_uri = {auth}\n\
             [ec2authtoken]\n\
             auth_uri = {auth}\n\
             [oslo_concurrency]\n\
             lock_path = {locks}\n\
             [oslo_messaging_notifications]\n\
             driver = noop\n\
             {authtoken}\
             {trustee}",
            transport = self.transport_url(),
            environments = self.venv_etc("heat/environment.d").display(),
            templates = self.venv_etc("heat/templates").display(),
            heat = self.ports.heat,
            db = self.sqlite("heat.sqlite"),
            paste = self.venv_etc("heat/api-paste.ini").display(),
            locks = self.path("locks").display(),
            authtoken = self.password_auth("keystone_authtoken", "heat"),
            trustee = self.password_auth("trustee", "heat"),
        )
    }

    /// The environment of the broker: loopback only, everything under the run dir.
    pub(crate) fn rabbit_env(&self) -> Vec<(&'static str, String)> {
        let dir = self.path("rabbitmq");
        let at = |sub: &str| dir.join(sub).display().to_string();
        vec![
            ("HOME", at("")),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
            ("ERL_EPMD_PORT", self.ports.epmd.to_string()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT", self.ports.amqp.to_string()),
            ("RABBITMQ_DIST_PORT", self.ports.amqp_dist.to_string()),
            (
                "RABBITMQ_NODENAME",
                format!("gate{}@localhost", self.ports.amqp),
            ),
            ("RABBITMQ_MNESIA_BASE", at("mnesia")),
            ("RABBITMQ_LOG_BASE", at("log")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", at("enabled_plugins")),
            ("RABBITMQ_CONFIG_FILE", at("rabbitmq")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", at("advanced.config")),
            ("RABBITMQ_CONF_ENV_FILE", at("rabbitmq-env.conf")),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}".into(),
            ),
        ]
    }
}

/// The config directory of a service under the run dir.
pub(crate) fn etc(dir: &Path, service: &str) -> PathBuf {
    dir.join("etc").join(service)
}
