//! nubo instance-types, images, instance …

use std::time::{Duration, Instant};

use nubo_api::compute::{
    DiskFormat, Image, ImageFile, ImagePart, Instance, InstanceConsole, InstanceState,
    InstanceType, LaunchRequest, LaunchResponse, PublishRequest, PublishedPort,
    RegisterImageRequest,
};

use nubo_api::security_groups::InstanceSecurityGroups;
use nubo_api::volumes::Volume;

use crate::args::{ImagesCommand, InstanceCommand, RegisterImageArgs, Transition, Wait};
use crate::client::{Client, ClientError};
use crate::commands::{Context, all_pages};
use crate::output::{note, opt, print, print_record, print_text};
use crate::progress::Progress;

pub async fn instance_types(ctx: &Context) -> Result<(), ClientError> {
    let types: Vec<InstanceType> = ctx.public().await?.get("/v1/instance-types").await?;
    let rows = types
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.vcpus.to_string(),
                t.memory_mib.to_string(),
                format!("{:.4}", t.price_per_second_nanos as f64 * 3600.0 / 1e9),
            ]
        })
        .collect();
    print(
        ctx.output(),
        &types,
        &["name", "vcpus", "memory_mib", "price_per_hour"],
        rows,
    )
}

const IMAGE_HEADERS: &[&str] = &["id", "name", "visibility", "state", "description"];

fn image_row(i: &Image) -> Vec<String> {
    vec![
        i.id.clone(),
        i.name.clone(),
        format!("{:?}", i.visibility).to_lowercase(),
        format!("{:?}", i.state).to_lowercase(),
        i.description.clone(),
    ]
}

fn print_image(ctx: &Context, i: &Image) -> Result<(), ClientError> {
    print_record(
        ctx.output(),
        i,
        vec![
            ("id", i.id.clone()),
            ("name", i.name.clone()),
            ("visibility", format!("{:?}", i.visibility).to_lowercase()),
            ("state", format!("{:?}", i.state).to_lowercase()),
            ("description", i.description.clone()),
            ("created", i.created_at.clone()),
        ],
    )
}

pub async fn images(ctx: &Context, cmd: ImagesCommand) -> Result<(), ClientError> {
    let client = ctx.client().await?;
    match cmd {
        ImagesCommand::List => {
            let page = all_pages::<Image>(&client, "/v1/images").await?;
            let rows = page.items.iter().map(image_row).collect();
            print(ctx.output(), &page, IMAGE_HEADERS, rows)
        }
        ImagesCommand::Show { image } => {
            print_image(ctx, &client.get(&format!("/v1/images/{image}")).await?)
        }
        ImagesCommand::Register(a) => print_image(ctx, &register_image(&client, a).await?),
        ImagesCommand::Delete { image } => {
            client.delete_empty(&format!("/v1/images/{image}")).await?;
            note(format!("deleted image {image}"));
            Ok(())
        }
    }
}

/// Registers, uploads each file, completes.
async fn register_image(client: &Client, a: RegisterImageArgs) -> Result<Image, ClientError> {
    let disk_format = match a.disk_format.as_deref() {
        Some("qcow2") => Some(DiskFormat::Qcow2),
        Some(_) => Some(DiskFormat::Raw),
        None if a.disk.is_some() => Some(DiskFormat::Raw),
        None => None,
    };
    let image: Image = client
        .post(
            "/v1/images",
            &RegisterImageRequest {
                name: a.name,
                description: a.description,
                cmdline: a.cmdline,
                ready_marker: a.ready_marker,
                disk_format,
            },
        )
        .await?;
    let parts = [
        (ImagePart::Kernel, Some(a.kernel)),
        (ImagePart::Initrd, a.initrd),
        (ImagePart::Disk, a.disk),
    ];
    for (part, file) in parts {
        if let Some(file) = file {
            let uploaded: ImageFile = client
                .upload(
                    &format!("/v1/images/{}/files/{}", image.id, part.as_str()),
                    &file,
                )
                .await?;
            note(format!(
                "uploaded {} ({} bytes)",
                part.as_str(),
                uploaded.bytes
            ));
        }
    }
    client
        .post_empty(&format!("/v1/images/{}/complete", image.id))
        .await
}

const HEADERS: &[&str] = &[
    "id",
    "name",
    "type",
    "state",
    "private ip",
    "host",
    "launched",
    "reason",
];

fn row(i: &Instance) -> Vec<String> {
    vec![
        i.id.clone(),
        opt(&i.name),
        i.instance_type.clone(),
        i.state.as_str().to_string(),
        opt(&i.private_ip),
        opt(&i.host_id),
        i.launched_at.clone(),
        i.state_reason.clone().unwrap_or_default(),
    ]
}

/// One instance with every field whole, its reason too.
fn print_instance(ctx: &Context, i: &Instance) -> Result<(), ClientError> {
    print_record(
        ctx.output(),
        i,
        vec![
            ("id", i.id.clone()),
            ("name", opt(&i.name)),
            ("image", i.image_id.clone()),
            ("type", i.instance_type.clone()),
            ("vcpus", i.vcpus.to_string()),
            ("memory_mib", i.memory_mib.to_string()),
            ("state", i.state.as_str().to_string()),
            ("state_reason", opt(&i.state_reason)),
            ("host", opt(&i.host_id)),
            ("network", opt(&i.network_id)),
            ("private_ip", opt(&i.private_ip)),
            ("key", opt(&i.key_name)),
            ("launched", i.launched_at.clone()),
            ("state_changed", i.state_changed_at.clone()),
        ],
    )
}

fn print_instances(ctx: &Context, instances: &[Instance]) -> Result<(), ClientError> {
    print(
        ctx.output(),
        &instances,
        HEADERS,
        instances.iter().map(row).collect(),
    )
}

pub async fn instances(ctx: &Context, cmd: InstanceCommand) -> Result<(), ClientError> {
    let client = ctx.client().await?;
    match cmd {
        InstanceCommand::Launch(a) => {
            let user_data = match &a.user_data {
                Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                    ClientError::Usage(format!("user-data {}: {e}", path.display()))
                })?),
                None => None,
            };
            let image = match (a.image, &a.root_volume) {
                (Some(image), _) => image,
                (None, Some(volume)) => {
                    let v: Volume = client.get(&format!("/v1/volumes/{volume}")).await?;
                    v.image_id.ok_or_else(|| {
                        ClientError::Usage(format!("volume {volume} holds no image to boot"))
                    })?
                }
                (None, None) => return Err(ClientError::Usage("--image is required".into())),
            };
            let launched: LaunchResponse = client
                .post(
                    "/v1/instances",
                    &LaunchRequest {
                        image,
                        instance_type: a.instance_type,
                        count: Some(a.count),
                        name: a.name,
                        user_data,
                        client_token: a.client_token,
                        key_name: a.key_name,
                        network: a.network,
                        security_groups: (!a.security_groups.is_empty())
                            .then_some(a.security_groups),
                        metadata_tokens: a.metadata_tokens,
                        root_volume_size_gib: a.root_volume_size,
                        keep_root_volume: a.keep_root_volume.then_some(true),
                        root_volume: a.root_volume,
                    },
                )
                .await?;
            let mut instances = launched.instances;
            if a.wait.wait {
                let target = InstanceState::Running;
                instances = wait_for(ctx, &client, instances, target, a.wait).await?;
            }
            match ctx.output() {
                crate::args::Output::Json => {
                    print(ctx.output(), &LaunchResponse { instances }, HEADERS, vec![])
                }
                crate::args::Output::Table | crate::args::Output::Csv => {
                    print_instances(ctx, &instances)
                }
            }
        }
        InstanceCommand::List { state } => {
            let path = match state {
                Some(s) => format!("/v1/instances?state={}", s.as_str()),
                None => "/v1/instances".to_string(),
            };
            let page = all_pages::<Instance>(&client, &path).await?;
            let rows = page.items.iter().map(row).collect();
            print(ctx.output(), &page, HEADERS, rows)
        }
        InstanceCommand::Show { instance_id } => {
            let i: Instance = client.get(&format!("/v1/instances/{instance_id}")).await?;
            print_instance(ctx, &i)
        }
        InstanceCommand::Reboot(t) => {
            transition(ctx, &client, t, "reboot", InstanceState::Running).await
        }
        InstanceCommand::Publish { instance_id, port } => {
            let published: PublishedPort = client
                .post(
                    &format!("/v1/instances/{instance_id}/ports"),
                    &PublishRequest { port },
                )
                .await?;
            print_text(ctx.output(), &published, &published.address)
        }
        InstanceCommand::Ports { instance_id } => {
            let ports: Vec<PublishedPort> = client
                .get(&format!("/v1/instances/{instance_id}/ports"))
                .await?;
            let rows = ports
                .iter()
                .map(|p| vec![p.port.to_string(), p.address.clone(), p.created_at.clone()])
                .collect();
            print(
                ctx.output(),
                &ports,
                &["port", "address", "published"],
                rows,
            )
        }
        InstanceCommand::SecurityGroups { instance_id, set } => {
            let path = format!("/v1/instances/{instance_id}/security-groups");
            let groups: InstanceSecurityGroups = if set.is_empty() {
                client.get(&path).await?
            } else {
                let ask = InstanceSecurityGroups {
                    security_groups: set,
                };
                client.put(&path, &ask).await?
            };
            let rows = groups
                .security_groups
                .iter()
                .map(|g| vec![g.clone()])
                .collect();
            print(ctx.output(), &groups, &["security group"], rows)
        }
        InstanceCommand::Console { instance_id } => {
            let console: InstanceConsole = client
                .get(&format!("/v1/instances/{instance_id}/console"))
                .await?;
            print_text(ctx.output(), &console, &console.output)
        }
        InstanceCommand::Stop(t) => {
            transition(ctx, &client, t, "stop", InstanceState::Stopped).await
        }
        InstanceCommand::Start(t) => {
            transition(ctx, &client, t, "start", InstanceState::Running).await
        }
        InstanceCommand::Terminate(t) => {
            let i: Instance = client
                .delete(&format!("/v1/instances/{}", t.instance_id))
                .await?;
            finish(ctx, &client, i, InstanceState::Terminated, t.wait).await
        }
    }
}

async fn transition(
    ctx: &Context,
    client: &Client,
    t: Transition,
    verb: &str,
    target: InstanceState,
) -> Result<(), ClientError> {
    let i: Instance = client
        .post_empty(&format!("/v1/instances/{}/{verb}", t.instance_id))
        .await?;
    finish(ctx, client, i, target, t.wait).await
}

async fn finish(
    ctx: &Context,
    client: &Client,
    i: Instance,
    target: InstanceState,
    wait: Wait,
) -> Result<(), ClientError> {
    let i = if wait.wait {
        wait_for(ctx, client, vec![i], target, wait)
            .await?
            .remove(0)
    } else {
        i
    };
    print(ctx.output(), &i, HEADERS, vec![row(&i)])
}

/// Polls until every instance is in `target`; an instance that fails instead ends
/// the wait with an error.
async fn wait_for(
    ctx: &Context,
    client: &Client,
    mut instances: Vec<Instance>,
    target: InstanceState,
    wait: Wait,
) -> Result<Vec<Instance>, ClientError> {
    let deadline = Instant::now() + Duration::from_secs(wait.timeout);
    let mut delay = Duration::from_millis(20);
    let mut progress = Progress::start(ctx.output(), "");
    loop {
        let done = instances.iter().filter(|i| i.state == target).count();
        progress.waiting_for(match instances.len() {
            1 => format!("{} to be {}", instances[0].id, target.as_str()),
            n => format!("{n} instances to be {} ({done} are)", target.as_str()),
        });
        for i in &instances {
            progress.reached(&i.id, i.state.as_str());
        }
        if let Some(failed) = instances
            .iter()
            .find(|i| i.state == InstanceState::Failed && target != InstanceState::Failed)
        {
            return Err(ClientError::Other(format!(
                "instance {} failed: {}",
                failed.id,
                failed.state_reason.as_deref().unwrap_or("no reason given")
            )));
        }
        if instances.iter().all(|i| i.state == target) {
            return Ok(instances);
        }
        if Instant::now() >= deadline {
            let waiting: Vec<String> = instances
                .iter()
                .filter(|i| i.state != target)
                .map(|i| format!("{} ({})", i.id, i.state.as_str()))
                .collect();
            return Err(ClientError::Other(format!(
                "gave up after {} s waiting for {}: {}",
                wait.timeout,
                target.as_str(),
                waiting.join(", ")
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_millis(250));
        for i in instances.iter_mut().filter(|i| i.state != target) {
            *i = client.get(&format!("/v1/instances/{}", i.id)).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use nubo_api::compute::{Instance, InstanceState, MetadataTokens};

    #[test]
    fn a_failed_instance_keeps_its_row_on_one_line_and_its_reason_is_cut() {
        let reason = format!("dnsmasq: failed to open pidfile {}", "x/".repeat(300));
        let failed = Instance {
            id: "i-1".into(),
            name: None,
            image_id: "img-1".into(),
            instance_type: "n1.nano".into(),
            vcpus: 1,
            memory_mib: 64,
            state: InstanceState::Failed,
            state_reason: Some(reason),
            host_id: None,
            region: "local-1".into(),
            key_name: None,
            network_id: None,
            private_ip: None,
            metadata_tokens: MetadataTokens::Optional,
            launched_at: "2026-12-01T00:00:00Z".into(),
            state_changed_at: "2026-12-01T00:00:01Z".into(),
        };
        let table = crate::output::table(super::HEADERS, &[super::row(&failed)]);
        let row = table.lines().nth(1).unwrap();
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(row.contains(" failed ") && row.ends_with('…'), "{row}");
        assert!(row.chars().count() < 160, "{row}");
    }
}
