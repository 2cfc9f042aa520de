//! Spore's `wasi:sockets/ip-name-lookup`: it replaces wasmtime-wasi's (which asks the node's
//! resolver, and so the node's `/etc/hosts` and `/etc/resolv.conf`) in the component linkers,
//! with lookups through the container's own files (`names.rs`).

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable, ResourceType};
use wasmtime_wasi::p2::Network;
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddress};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use crate::wasm::names::{ContainerNames, LookupError};

/// The interface wasmtime-wasi 48 defines (guests importing any 0.2.x version are linked to it).
pub const INTERFACE: &str = "wasi:sockets/ip-name-lookup@0.2.12";

/// Store data that can resolve names: the container's names and the store's resource table.
pub trait NameLookupView: Send + 'static {
    fn name_lookup(&mut self) -> (&Arc<ContainerNames>, &mut ResourceTable);
}

/// A lookup in progress, then its addresses.
pub struct ResolveAddresses(Resolving);

enum Resolving {
    Pending(oneshot::Receiver<Result<Vec<IpAddr>, LookupError>>),
    Done(Result<std::vec::IntoIter<IpAddr>, ErrorCode>),
}

fn error_code(err: &LookupError) -> ErrorCode {
    match err {
        LookupError::InvalidName(_) => ErrorCode::InvalidArgument,
        LookupError::NotFound(_) => ErrorCode::NameUnresolvable,
        LookupError::Temporary { .. } => ErrorCode::TemporaryResolverFailure,
    }
}

fn done(result: Result<Result<Vec<IpAddr>, LookupError>, oneshot::error::RecvError>) -> Resolving {
    Resolving::Done(match result {
        Ok(Ok(ips)) => Ok(ips.into_iter()),
        Ok(Err(err)) => {
            tracing::debug!(%err, "a guest's name lookup failed");
            Err(error_code(&err))
        }
        Err(_) => Err(ErrorCode::TemporaryResolverFailure),
    })
}

impl ResolveAddresses {
    fn next(&mut self) -> Result<Option<IpAddress>, ErrorCode> {
        if let Resolving::Pending(receiver) = &mut self.0 {
            match receiver.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => return Err(ErrorCode::WouldBlock),
                Ok(result) => self.0 = done(Ok(result)),
                Err(oneshot::error::TryRecvError::Closed) => {
                    self.0 = Resolving::Done(Err(ErrorCode::TemporaryResolverFailure))
                }
            }
        }
        match &mut self.0 {
            Resolving::Done(Ok(ips)) => Ok(ips.next().map(IpAddress::from)),
            Resolving::Done(Err(code)) => Err(*code),
            Resolving::Pending(_) => Err(ErrorCode::WouldBlock),
        }
    }
}

#[async_trait::async_trait]
impl Pollable for ResolveAddresses {
    async fn ready(&mut self) {
        if let Resolving::Pending(receiver) = &mut self.0 {
            let result = receiver.await;
            self.0 = done(result);
        }
    }
}

/// Defines Spore's `ip-name-lookup` in `linker` over what wasmtime-wasi defined there.
pub fn add_to_linker<T: NameLookupView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut instance = linker.instance(INTERFACE)?;
    instance.resource(
        "resolve-address-stream",
        ResourceType::host::<ResolveAddresses>(),
        |mut store: StoreContextMut<'_, T>, rep| {
            let (_, table) = store.data_mut().name_lookup();
            table.delete(Resource::<ResolveAddresses>::new_own(rep))?;
            Ok(())
        },
    )?;
    instance.func_wrap(
        "resolve-addresses",
        |mut store: StoreContextMut<'_, T>, (network, name): (Resource<Network>, String)| {
            let (names, table) = store.data_mut().name_lookup();
            let names = names.clone();
            // The network resource is the capability to look names up.
            table.get(&network)?;
            let (sender, receiver) = oneshot::channel();
            tokio::spawn(async move {
                let _ = sender.send(names.resolve(&name).await);
            });
            let stream = table.push(ResolveAddresses(Resolving::Pending(receiver)))?;
            Ok((Ok::<_, ErrorCode>(stream),))
        },
    )?;
    instance.func_wrap(
        "[method]resolve-address-stream.resolve-next-address",
        |mut store: StoreContextMut<'_, T>, (this,): (Resource<ResolveAddresses>,)| {
            let (_, table) = store.data_mut().name_lookup();
            Ok((table.get_mut(&this)?.next(),))
        },
    )?;
    instance.func_wrap(
        "[method]resolve-address-stream.subscribe",
        |mut store: StoreContextMut<'_, T>, (this,): (Resource<ResolveAddresses>,)| {
            let (_, table) = store.data_mut().name_lookup();
            let pollable: Resource<DynPollable> = subscribe(table, this)?;
            Ok((pollable,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
