//! `skiff describe KIND NAME`.

use clap::Args;
use skiff_api::ResourceExt;
use skiff_api::client::{Api, ListParams, ResourceClient, Transport};
use skiff_api::v1::Event;
use skiff_api::with_kind;

use crate::error::Result;
use crate::output::describe::describe;

#[derive(Args)]
pub struct DescribeArgs {
    kind: String,
    names: Vec<String>,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Label selector, to describe every match
    #[arg(short = 'l', long)]
    selector: Option<String>,
}

pub async fn run(transport: &Transport, args: DescribeArgs) -> Result<()> {
    let info = super::kind(&args.kind)?;
    let namespace = super::namespace(&args.namespace);
    with_kind!(info, K => describe_kind::<K>(transport, &args, &namespace).await)
}

async fn describe_kind<K: ResourceClient>(
    transport: &Transport,
    args: &DescribeArgs,
    namespace: &str,
) -> Result<()> {
    let api = Api::<K>::new(transport.clone(), namespace);
    let objects: Vec<K> = if args.names.is_empty() {
        api.list(ListParams::default().labels(args.selector.as_deref().unwrap_or("")))
            .await?
            .0
    } else {
        let mut v = Vec::new();
        for n in &args.names {
            v.push(api.get(n).await?);
        }
        v
    };
    let events = Api::<Event>::new(
        transport.clone(),
        if K::NAMESPACED { namespace } else { "" },
    );
    for (i, obj) in objects.iter().enumerate() {
        if i > 0 {
            println!("\n");
        }
        let selector = format!(
            "involvedObject.kind={},involvedObject.name={}",
            K::KIND,
            obj.name()
        );
        let related = events
            .list(ListParams::default().fields(&selector))
            .await
            .map(|r| r.0)
            .unwrap_or_default();
        print!("{}", describe(obj, &related));
    }
    Ok(())
}
