//! The API of security groups and of instances' membership in them. Every
//! change is pushed to the network's hosts before the answer, so that it holds
//! for running instances by the time the caller hears it did.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use nubo_api::error::{ErrorBody, ErrorCode};
use nubo_api::page::{Page, PageParams};
use nubo_api::security_groups::{
    AddRuleRequest, CreateSecurityGroupRequest, Direction, InstanceSecurityGroups, Protocol,
    SecurityGroup, SecurityGroupRule,
};
use nubo_store::security_groups::{self as groups, GroupRow, RuleRow};
use nubo_store::{Conn, StoreError, ids, instances, networks};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Json, Path, Query};
use crate::api::page;
use crate::clock::rfc3339;
use crate::networks::{sync, valid_name};
use crate::state::AppState;

/// The most groups an instance may be a member of, as in AWS.
pub const MAX_PER_INSTANCE: usize = 5;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(group_list, group_create))
        .routes(routes!(group_show, group_delete))
        .routes(routes!(rule_add))
        .routes(routes!(rule_remove))
        .routes(routes!(instance_groups, instance_set_groups))
}

fn rule_view(r: RuleRow) -> SecurityGroupRule {
    let direction = if r.direction == "egress" {
        Direction::Egress
    } else {
        Direction::Ingress
    };
    let protocol = match r.protocol.as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" => Protocol::Icmp,
        _ => Protocol::All,
    };
    SecurityGroupRule {
        id: r.id,
        direction,
        protocol,
        from_port: r.from_port.map(|p| p as u16),
        to_port: r.to_port.map(|p| p as u16),
        cidr: r.cidr,
        peer_group: r.peer_group_id,
    }
}

/// The groups as the API shows them, with their rules.
async fn views(c: &mut Conn, rows: Vec<GroupRow>) -> Result<Vec<SecurityGroup>, StoreError> {
    let ids: Vec<String> = rows.iter().map(|g| g.id.clone()).collect();
    let mut rules: HashMap<String, Vec<SecurityGroupRule>> = HashMap::new();
    for r in groups::rules_of(c, &ids).await? {
        rules
            .entry(r.group_id.clone())
            .or_default()
            .push(rule_view(r));
    }
    Ok(rows
        .into_iter()
        .map(|g| SecurityGroup {
            rules: rules.remove(&g.id).unwrap_or_default(),
            created_at: rfc3339(g.created_at),
            id: g.id,
            name: g.name,
            description: g.description,
            network_id: g.network_id,
        })
        .collect())
}

async fn view(c: &mut Conn, g: GroupRow) -> ApiResult<SecurityGroup> {
    let mut v = views(c, vec![g]).await?;
    v.pop()
        .ok_or_else(|| ApiError::internal("a group vanished while shown"))
}

/// The caller's group `id_or_name`, or a 404 (a 400 for an ambiguous name).
async fn find(c: &mut Conn, caller: &Caller, id_or_name: &str) -> ApiResult<GroupRow> {
    match groups::get(c, &caller.account_id, id_or_name).await {
        Ok(Some(g)) => Ok(g),
        Ok(None) => Err(ApiError::not_found("security group", id_or_name)),
        Err(StoreError::Conflict(why)) => Err(ApiError::invalid(why)),
        Err(e) => Err(e.into()),
    }
}

/// Group `id_or_name` as seen from network `network_id`: a name is first
/// looked for among that network's groups.
async fn in_network(
    c: &mut Conn,
    caller: &Caller,
    network_id: &str,
    id_or_name: &str,
) -> ApiResult<GroupRow> {
    match groups::by_name(&mut *c, network_id, id_or_name).await? {
        Some(g) => Ok(g),
        None => find(c, caller, id_or_name).await,
    }
}

/// The groups an instance of network `network_id` is to be a member of:
/// `asked` resolved (each must be of that network), or the network's default.
pub async fn for_instance(
    c: &mut Conn,
    caller: &Caller,
    network: &networks::NetworkRow,
    asked: Option<&[String]>,
    at: i64,
) -> ApiResult<Vec<GroupRow>> {
    let Some(asked) = asked else {
        return Ok(vec![groups::default_for(c, network, at).await?]);
    };
    if asked.is_empty() || asked.len() > MAX_PER_INSTANCE {
        return Err(ApiError::invalid(format!(
            "an instance is a member of 1 to {MAX_PER_INSTANCE} security groups"
        )));
    }
    let mut out: Vec<GroupRow> = Vec::with_capacity(asked.len());
    for name in asked {
        let g = in_network(&mut *c, caller, &network.id, name)
            .await
            .map_err(|e| match e.code {
                ErrorCode::NotFound => {
                    ApiError::invalid(format!("security group {name:?} not found"))
                }
                _ => e,
            })?;
        if g.network_id != network.id {
            return Err(ApiError::invalid(format!(
                "security group {} is of network {}, not of {} where the instance is",
                g.name, g.network_id, network.name
            )));
        }
        if !out.iter().any(|o| o.id == g.id) {
            out.push(g);
        }
    }
    Ok(out)
}

/// Lists the account's security groups with their rules.
#[utoipa::path(get, path = "/v1/security-groups", tag = "networks",
    operation_id = "security_group_list", params(PageParams),
    responses((status = 200, body = Page<SecurityGroup>)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn group_list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<PageParams>,
) -> ApiResult<axum::Json<Page<SecurityGroup>>> {
    let q = page::query(p.limit, p.page_token)?;
    let mut c = state.store.conn().await?;
    let paged = groups::list(&mut c, &caller.account_id, &q).await?;
    let items = views(&mut c, paged.items).await?;
    Ok(axum::Json(Page {
        items,
        next_page_token: paged.next_after,
    }))
}

/// Creates a security group in a network. It starts letting everything in
/// from its own members and everything out.
#[utoipa::path(post, path = "/v1/security-groups", tag = "networks",
    operation_id = "security_group_create", request_body = CreateSecurityGroupRequest,
    responses((status = 201, body = SecurityGroup),
              (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn group_create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateSecurityGroupRequest>,
) -> ApiResult<(StatusCode, axum::Json<SecurityGroup>)> {
    if !valid_name(&req.name) {
        return Err(ApiError::invalid(
            "a security group name is 1 to 64 letters, digits, '.', '_' or '-'",
        ));
    }
    let description = req.description.clone().unwrap_or_default();
    if description.chars().count() > 255 || description.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "a description is at most 255 characters without control characters",
        ));
    }
    let at = state.clock.now_micros();
    let mut tx = state.store.begin().await?;
    let network = match &req.network {
        Some(n) => networks::get(&mut tx, &caller.account_id, n)
            .await?
            .ok_or_else(|| ApiError::invalid(format!("network {n:?} not found")))?,
        None => networks::default_for(&mut tx, &caller.account_id, at).await?,
    };
    let g = GroupRow {
        id: ids::new("sg"),
        account_id: caller.account_id.clone(),
        network_id: network.id.clone(),
        name: req.name.clone(),
        description,
        created_at: at,
    };
    match groups::insert(&mut tx, &g).await {
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "network {} already has a security group named {:?}",
                    network.name, req.name
                ),
            ));
        }
        other => other?,
    }
    let shown = view(&mut tx, g).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(shown)))
}

/// Shows a security group, by id or name, with its rules.
#[utoipa::path(get, path = "/v1/security-groups/{group}", tag = "networks",
    operation_id = "security_group_show",
    params(("group" = String, Path, description = "Security group id or name")),
    responses((status = 200, body = SecurityGroup), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn group_show(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
) -> ApiResult<axum::Json<SecurityGroup>> {
    let mut c = state.store.conn().await?;
    let g = find(&mut c, &caller, &group).await?;
    Ok(axum::Json(view(&mut c, g).await?))
}

/// Deletes a security group; refused while instances are members or other
/// groups' rules name it.
#[utoipa::path(delete, path = "/v1/security-groups/{group}", tag = "networks",
    operation_id = "security_group_delete",
    params(("group" = String, Path, description = "Security group id or name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn group_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
) -> ApiResult<StatusCode> {
    let mut tx = state.store.begin().await?;
    let g = find(&mut tx, &caller, &group).await?;
    match groups::delete(&mut tx, &g, state.clock.now_micros()).await {
        Err(StoreError::Conflict(why)) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("security group {} is in use: {why}", g.name),
            ));
        }
        other => other?,
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The rule `req` asks for, checked.
async fn rule_of(
    c: &mut Conn,
    caller: &Caller,
    g: &GroupRow,
    req: &AddRuleRequest,
    at: i64,
) -> ApiResult<RuleRow> {
    let ports = match (req.protocol, req.from_port, req.to_port) {
        (Protocol::Tcp | Protocol::Udp, None, None) => None,
        (Protocol::Tcp | Protocol::Udp, Some(from), to) => {
            let to = to.unwrap_or(from);
            if from == 0 || to < from {
                return Err(ApiError::invalid(format!(
                    "ports {from}-{to} are not a range within 1-65535"
                )));
            }
            Some((i64::from(from), i64::from(to)))
        }
        (Protocol::Tcp | Protocol::Udp, None, Some(_)) => {
            return Err(ApiError::invalid("to_port needs a from_port"));
        }
        (_, None, None) => None,
        (p, _, _) => {
            return Err(ApiError::invalid(format!(
                "protocol {} has no ports",
                p.as_str()
            )));
        }
    };
    let (cidr, peer_group_id) = match (&req.cidr, &req.peer_group) {
        (Some(cidr), None) => {
            if networks::parse_cidr(cidr).is_none() {
                return Err(ApiError::invalid(format!(
                    "cidr {cidr:?} is not an IPv4 range a.b.c.d/n with its host bits zero"
                )));
            }
            (Some(cidr.clone()), None)
        }
        (None, Some(peer)) => {
            let p = in_network(&mut *c, caller, &g.network_id, peer).await?;
            if p.network_id != g.network_id {
                return Err(ApiError::invalid(format!(
                    "security group {} is of another network than {}",
                    p.name, g.name
                )));
            }
            (None, Some(p.id))
        }
        _ => {
            return Err(ApiError::invalid(
                "a rule names its peers by exactly one of cidr and peer_group",
            ));
        }
    };
    Ok(RuleRow {
        id: ids::new("sgr"),
        group_id: g.id.clone(),
        direction: req.direction.unwrap_or_default().as_str().into(),
        protocol: req.protocol.as_str().into(),
        from_port: ports.map(|p| p.0),
        to_port: ports.map(|p| p.1),
        cidr,
        peer_group_id,
        created_at: at,
    })
}

/// Adds a rule to a security group; it holds for the group's running
/// instances when this answers. Adding a rule the group has changes nothing.
#[utoipa::path(post, path = "/v1/security-groups/{group}/rules", tag = "networks",
    operation_id = "security_group_rule_add", request_body = AddRuleRequest,
    params(("group" = String, Path, description = "Security group id or name")),
    responses((status = 201, body = SecurityGroup),
              (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn rule_add(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    Json(req): Json<AddRuleRequest>,
) -> ApiResult<(StatusCode, axum::Json<SecurityGroup>)> {
    let at = state.clock.now_micros();
    let mut tx = state.store.begin().await?;
    let g = find(&mut tx, &caller, &group).await?;
    let rule = rule_of(&mut tx, &caller, &g, &req, at).await?;
    groups::add_rule(&mut tx, &g, &rule).await?;
    let shown = view(&mut tx, g).await?;
    tx.commit().await?;
    sync::push(&state, &shown.network_id).await?;
    Ok((StatusCode::CREATED, axum::Json(shown)))
}

/// Removes a rule from a security group; it no longer lets new connections
/// through when this answers.
#[utoipa::path(delete, path = "/v1/security-groups/{group}/rules/{rule_id}", tag = "networks",
    operation_id = "security_group_rule_remove",
    params(("group" = String, Path, description = "Security group id or name"),
           ("rule_id" = String, Path, description = "Rule id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn rule_remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((group, rule_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let mut tx = state.store.begin().await?;
    let g = find(&mut tx, &caller, &group).await?;
    if !groups::remove_rule(&mut tx, &g, &rule_id, state.clock.now_micros()).await? {
        return Err(ApiError::not_found("rule", &rule_id));
    }
    tx.commit().await?;
    sync::push(&state, &g.network_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists the security groups of an instance.
#[utoipa::path(get, path = "/v1/instances/{instance_id}/security-groups", tag = "compute",
    operation_id = "instance_security_groups",
    params(("instance_id" = String, Path, description = "Instance id")),
    responses((status = 200, body = InstanceSecurityGroups), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn instance_groups(
    State(state): State<AppState>,
    caller: Caller,
    Path(instance_id): Path<String>,
) -> ApiResult<axum::Json<InstanceSecurityGroups>> {
    let mut c = state.store.conn().await?;
    instances::get(&mut c, &caller.account_id, &instance_id)
        .await?
        .ok_or_else(|| ApiError::not_found("instance", &instance_id))?;
    Ok(axum::Json(InstanceSecurityGroups {
        security_groups: groups::of_instance(&mut c, &instance_id).await?,
    }))
}

/// Replaces the security groups of an instance, running or not; the change
/// holds when this answers.
#[utoipa::path(put, path = "/v1/instances/{instance_id}/security-groups", tag = "compute",
    operation_id = "instance_set_security_groups", request_body = InstanceSecurityGroups,
    params(("instance_id" = String, Path, description = "Instance id")),
    responses((status = 200, body = InstanceSecurityGroups),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn instance_set_groups(
    State(state): State<AppState>,
    caller: Caller,
    Path(instance_id): Path<String>,
    Json(req): Json<InstanceSecurityGroups>,
) -> ApiResult<axum::Json<InstanceSecurityGroups>> {
    let at = state.clock.now_micros();
    let mut tx = state.store.begin().await?;
    let row = instances::get(&mut tx, &caller.account_id, &instance_id)
        .await?
        .ok_or_else(|| ApiError::not_found("instance", &instance_id))?;
    let network = match &row.network_id {
        Some(id) if row.private_ip.is_some() => networks::get(&mut tx, &caller.account_id, id)
            .await?
            .ok_or_else(|| ApiError::internal(format!("network {id} of {instance_id} is gone")))?,
        _ => {
            return Err(ApiError::invalid_state(format!(
                "instance {instance_id} is {} and on no network",
                row.state
            )));
        }
    };
    let chosen = for_instance(&mut tx, &caller, &network, Some(&req.security_groups), at).await?;
    groups::set_membership(&mut tx, &caller.account_id, &row.id, &chosen, at).await?;
    let security_groups = groups::of_instance(&mut tx, &row.id).await?;
    tx.commit().await?;
    sync::push(&state, &network.id).await?;
    Ok(axum::Json(InstanceSecurityGroups { security_groups }))
}
