//! Running `deploy/argocd/health.lua` the way Argo CD does: the object as the global `obj`, the
//! returned table read as `{status, message}`, in a Lua 5.1 state with only the libraries Argo
//! CD opens (base, table, package; Argo CD adds a reduced `os`, which the script does not use).
//! Argo CD runs gopher-lua, a Lua 5.1 implementation; this runs the reference Lua 5.1.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaOptions, LuaSerdeExt, StdLib, Table};
use serde_json::Value;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What a health script returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub status: String,
    pub message: String,
}

impl Health {
    pub fn new(status: &str, message: &str) -> Health {
        Health { status: status.into(), message: message.into() }
    }
}

/// The statuses Argo CD accepts from a health script.
pub const ARGO_STATUSES: [&str; 6] = ["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"];

/// `deploy/argocd/health.lua`.
pub fn health_lua() -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(repo_root().join("deploy/argocd/health.lua"))?)
}

/// Runs `deploy/argocd/health.lua` on `obj`.
pub fn health_of(obj: &Value) -> anyhow::Result<Health> {
    eval_health(&health_lua()?, obj)
}

/// Runs a health script on `obj`. JSON null becomes nil, as in Argo CD (unstructured objects
/// have no nulls by the time they reach Lua).
pub fn eval_health(script: &str, obj: &Value) -> anyhow::Result<Health> {
    let lua = Lua::new_with(StdLib::TABLE | StdLib::PACKAGE, LuaOptions::default())?;
    let options = SerializeOptions::new().serialize_none_to_null(false).serialize_unit_to_null(false);
    lua.globals().set("obj", lua.to_value_with(obj, options)?)?;
    let hs: Table = lua.load(script).set_name("health.lua").eval()?;
    let status: String = hs.get("status")?;
    let message: Option<String> = hs.get("message")?;
    if !ARGO_STATUSES.contains(&status.as_str()) {
        anyhow::bail!("health.lua returned status {status:?}, which Argo CD does not know");
    }
    Ok(Health { status, message: message.unwrap_or_default() })
}
