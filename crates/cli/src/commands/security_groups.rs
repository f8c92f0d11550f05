//! nubo security-group …

use nubo_api::security_groups::{
    AddRuleRequest, CreateSecurityGroupRequest, Direction, SecurityGroup, SecurityGroupRule,
};

use crate::args::{AllowArgs, SecurityGroupCommand};
use crate::client::{Client, ClientError};
use crate::commands::{Context, all_pages};
use crate::output::{note, print};

const HEADERS: &[&str] = &["id", "name", "network", "rules", "description"];
const RULE_HEADERS: &[&str] = &["rule", "direction", "protocol", "ports", "peer"];

fn row(g: &SecurityGroup) -> Vec<String> {
    vec![
        g.id.clone(),
        g.name.clone(),
        g.network_id.clone(),
        g.rules.len().to_string(),
        g.description.clone(),
    ]
}

fn rule_row(r: &SecurityGroupRule) -> Vec<String> {
    let ports = match (r.from_port, r.to_port) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => "all".into(),
    };
    let peer = r
        .cidr
        .clone()
        .or_else(|| r.peer_group.clone())
        .unwrap_or_default();
    vec![
        r.id.clone(),
        r.direction.as_str().into(),
        r.protocol.as_str().into(),
        ports,
        peer,
    ]
}

/// A group's rules, a line each, for people; the whole group for programs.
fn show(ctx: &Context, g: &SecurityGroup) -> Result<(), ClientError> {
    print(
        ctx.output(),
        g,
        RULE_HEADERS,
        g.rules.iter().map(rule_row).collect(),
    )
}

async fn allow(client: &Client, a: AllowArgs) -> Result<SecurityGroup, ClientError> {
    let egress = a.to.is_some() || a.to_group.is_some();
    let (cidr, peer_group) = match (a.from.or(a.to), a.from_group.or(a.to_group)) {
        (None, None) => {
            return Err(ClientError::Usage(
                "say whom the rule is for: --from, --from-group, --to or --to-group".into(),
            ));
        }
        peers => peers,
    };
    let req = AddRuleRequest {
        direction: Some(if egress {
            Direction::Egress
        } else {
            Direction::Ingress
        }),
        protocol: a.proto,
        from_port: a.port.map(|p| p.0),
        to_port: a.port.map(|p| p.1),
        cidr,
        peer_group,
    };
    client
        .post(&format!("/v1/security-groups/{}/rules", a.group), &req)
        .await
}

pub async fn run(ctx: &Context, cmd: SecurityGroupCommand) -> Result<(), ClientError> {
    let client = ctx.client().await?;
    let out = ctx.output();
    match cmd {
        SecurityGroupCommand::List => {
            let page = all_pages::<SecurityGroup>(&client, "/v1/security-groups").await?;
            print(out, &page, HEADERS, page.items.iter().map(row).collect())
        }
        SecurityGroupCommand::Create {
            name,
            network,
            description,
        } => {
            let req = CreateSecurityGroupRequest {
                name,
                description,
                network,
            };
            let g: SecurityGroup = client.post("/v1/security-groups", &req).await?;
            print(out, &g, HEADERS, vec![row(&g)])
        }
        SecurityGroupCommand::Show { group } => {
            let g: SecurityGroup = client.get(&format!("/v1/security-groups/{group}")).await?;
            show(ctx, &g)
        }
        SecurityGroupCommand::Delete { group } => {
            client
                .delete_empty(&format!("/v1/security-groups/{group}"))
                .await?;
            note(format!("deleted security group {group}"));
            Ok(())
        }
        SecurityGroupCommand::Allow(a) => {
            let g = allow(&client, a).await?;
            show(ctx, &g)
        }
        SecurityGroupCommand::Revoke { group, rule_id } => {
            client
                .delete_empty(&format!("/v1/security-groups/{group}/rules/{rule_id}"))
                .await?;
            note(format!("revoked rule {rule_id} of {group}"));
            Ok(())
        }
    }
}
