//! `skiff auth can-i VERB RESOURCE[/NAME] [NAME]` and `skiff auth whoami`, as kubectl's.
//!
//! `can-i` prints `yes` (exit 0) or `no` (exit 1), with the server's reason after `no` when it
//! gives one; `--as USER [--as-group GROUP]...` asks about someone else (a SubjectAccessReview,
//! which needs `create` on subjectaccessreviews). `pods/log`-style resources name a subresource.

use clap::{Args, Subcommand};
use skiff_api::client::Transport;
use skiff_api::kinds::KindInfo;
use skiff_api::v1::access_review_api_client::AccessReviewApiClient;
use skiff_api::v1::*;

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    command: AuthCommand,
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Check whether an action is allowed: prints yes (exit 0) or no (exit 1)
    CanI(CanIArgs),
    /// Print who the server takes you for: user name and groups
    Whoami,
}

#[derive(Args)]
pub struct CanIArgs {
    /// get, list, watch, create, update, delete
    verb: String,
    /// pods, deployments.apps, pods/log, deployment/web ...
    resource: String,
    /// The object's name
    name: Option<String>,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// In every namespace (a ClusterRoleBinding's grant)
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// A subresource (`log`, `exec`, `status`), as `pods/log` also says
    #[arg(long)]
    subresource: Option<String>,
    /// Ask about this user instead of yourself (system:serviceaccount:NS:NAME for a ServiceAccount)
    #[arg(long = "as", value_name = "USER")]
    as_user: Option<String>,
    /// A group of the --as user (repeatable)
    #[arg(long = "as-group", value_name = "GROUP")]
    as_groups: Vec<String>,
    /// Print nothing: the exit code answers
    #[arg(short, long)]
    quiet: bool,
}

const VERBS: &[&str] = &["get", "list", "watch", "create", "update", "delete", "*"];

/// The review's resource attributes from the command line (bad input: exit 2).
fn attributes(args: &CanIArgs) -> Result<ResourceAttributes> {
    let verb = args.verb.to_ascii_lowercase();
    if !VERBS.contains(&verb.as_str()) {
        return Err(CliError::usage(format!(
            "error: verb {:?}: skiff's API serves {}",
            args.verb,
            VERBS[..6].join(", ")
        )));
    }
    // `pods/log`, `deployment/web` or `deployments.apps`.
    let (word, rest) = match args.resource.split_once('/') {
        Some((w, r)) => (w, Some(r)),
        None => (args.resource.as_str(), None),
    };
    let info = KindInfo::lookup(word).ok_or_else(|| {
        CliError::usage(format!(
            "error: the server doesn't have a resource type {word:?}"
        ))
    })?;
    let (mut subresource, mut name) = (String::new(), args.name.clone().unwrap_or_default());
    if let Some(rest) = rest {
        // kubectl: `TYPE/NAME` when TYPE is singular or a short name, `RESOURCE/SUBRESOURCE`
        // when it is the plural.
        if word.eq_ignore_ascii_case(info.plural) {
            subresource = rest.to_string();
        } else {
            name = rest.to_string();
        }
    }
    if let Some(s) = &args.subresource {
        subresource = s.clone();
    }
    let namespace = if args.all_namespaces || !info.namespaced {
        String::new()
    } else {
        super::namespace(&args.namespace)
    };
    let group = info.api_version.rsplit_once('/').map_or("", |(g, _)| g);
    Ok(ResourceAttributes {
        namespace,
        verb,
        group: group.to_string(),
        resource: info.plural.to_string(),
        subresource,
        name,
    })
}

pub async fn run(transport: &Transport, args: AuthArgs) -> Result<()> {
    match args.command {
        AuthCommand::CanI(args) => can_i(transport, args).await,
        AuthCommand::Whoami => whoami(transport).await,
    }
}

async fn can_i(transport: &Transport, args: CanIArgs) -> Result<()> {
    let attrs = attributes(&args)?;
    if args.as_user.is_none() && !args.as_groups.is_empty() {
        return Err(CliError::usage("error: --as-group needs --as USER"));
    }
    let review = SubjectAccessReview {
        spec: Some(SubjectAccessReviewSpec {
            resource_attributes: Some(attrs),
            user: args.as_user.clone().unwrap_or_default(),
            groups: args.as_groups.clone(),
        }),
        ..Default::default()
    };
    let mut client = AccessReviewApiClient::new(transport.clone());
    let answer = if args.as_user.is_some() {
        client.create_subject_access_review(review).await?
    } else {
        client.create_self_subject_access_review(review).await?
    }
    .into_inner();
    let status = answer.status.unwrap_or_default();
    if status.allowed {
        if !args.quiet {
            println!("yes");
        }
        return Ok(());
    }
    if !args.quiet {
        if status.reason.is_empty() {
            println!("no");
        } else {
            println!("no - {}", status.reason);
        }
    }
    Err(CliError {
        code: 1,
        message: String::new(),
    })
}

async fn whoami(transport: &Transport) -> Result<()> {
    let mut client = AccessReviewApiClient::new(transport.clone());
    let review = client
        .who_am_i(SelfSubjectReviewRequest {})
        .await?
        .into_inner();
    let user = review.user_info.unwrap_or_default();
    let rows = vec![
        vec!["Username".to_string(), user.username],
        vec!["Groups".to_string(), format!("[{}]", user.groups.join(" "))],
    ];
    print!(
        "{}",
        crate::output::table::render(&["ATTRIBUTE", "VALUE"], &rows, true)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CanIArgs,
    }

    fn parse(line: &[&str]) -> Result<ResourceAttributes> {
        let cli = Cli::try_parse_from(std::iter::once("can-i").chain(line.iter().copied()))
            .map_err(|e| CliError::usage(e.to_string()))?;
        attributes(&cli.args)
    }

    #[test]
    fn resources_names_and_subresources() {
        let a = parse(&["create", "deployments.apps", "-n", "dev"]).unwrap();
        assert_eq!(
            (
                a.verb.as_str(),
                a.group.as_str(),
                a.resource.as_str(),
                a.namespace.as_str()
            ),
            ("create", "apps", "deployments", "dev")
        );
        let a = parse(&["get", "pods/log"]).unwrap();
        assert_eq!(
            (a.resource.as_str(), a.subresource.as_str()),
            ("pods", "log")
        );
        assert_eq!(a.namespace, "default");
        let a = parse(&["delete", "deploy/web"]).unwrap();
        assert_eq!(
            (a.resource.as_str(), a.name.as_str()),
            ("deployments", "web")
        );
        let a = parse(&["get", "secret", "db", "-A"]).unwrap();
        assert_eq!((a.name.as_str(), a.namespace.as_str()), ("db", ""));
        let a = parse(&["list", "nodes", "-n", "dev"]).unwrap();
        assert_eq!(a.namespace, "", "nodes are cluster-scoped");
        let a = parse(&["create", "clusterrolebindings"]).unwrap();
        assert_eq!(a.group, "rbac.authorization.k8s.io");
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for line in [&["fly", "pods"][..], &["get", "widgets"][..]] {
            assert_eq!(parse(line).unwrap_err().code, 2, "{line:?}");
        }
    }
}
