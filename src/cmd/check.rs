//! `cloudsec config check [--component C] FILE`: the configuration as
//! `serve` (or `proxy`) would load it, every bad key named, no secret read.

use std::path::Path;

use cloudsec::Component;
use cloudsec_runtime::config::{self, EXIT_CONFIG};

use super::{EXIT_NO_INPUT, Fatal};
use crate::CheckedComponent;

pub(crate) fn run(component: Option<CheckedComponent>, file: &Path) -> Result<(), Fatal> {
    let text = std::fs::read_to_string(file).map_err(|e| Fatal {
        code: EXIT_NO_INPUT,
        message: format!("cannot read configuration file {}: {e}", file.display()),
    })?;
    let component = component.map(|c| match c {
        CheckedComponent::Auth => Component::Auth,
        CheckedComponent::Documents => Component::Documents,
        CheckedComponent::Audit => Component::Audit,
        CheckedComponent::Gateway => Component::Gateway,
        CheckedComponent::Proxy => Component::Proxy,
    });
    let problems = cloudsec::config::check(&text, &config::process_env(), component);
    if problems.is_empty() {
        let what = component.map_or("any component".to_owned(), |c| c.name().to_owned());
        println!("{}: good for {what}", file.display());
        return Ok(());
    }
    for problem in &problems {
        eprintln!("{}: {problem}", file.display());
    }
    Err(Fatal {
        code: EXIT_CONFIG as u8,
        message: format!(
            "{} problem{} in {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            file.display()
        ),
    })
}
