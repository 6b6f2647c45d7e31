//! The protobuf messages of the wire contracts, generated from `proto/` at build time.
//!
//! `common` and `warehouse` are the seed's contract, unchanged on the wire; `flashsale` is
//! flashgate's own. With the `warehouse` feature the tonic server and client stubs are generated
//! too; without it only the prost messages (which the edge encodes for gRPC-Web).
#![allow(missing_docs, clippy::all)]

/// The seed's shared messages (package `common`).
pub mod common {
    include!(concat!(env!("OUT_DIR"), "/common.rs"));
}

/// The seed's warehouse contract (package `warehouse`).
pub mod warehouse {
    include!(concat!(env!("OUT_DIR"), "/warehouse.rs"));
}

/// flashgate's sale services (package `flashsale`).
pub mod flashsale {
    include!(concat!(env!("OUT_DIR"), "/flashsale.rs"));
}

/// The encoded `FileDescriptorSet` of all three files, served by gRPC server reflection.
#[cfg(feature = "warehouse")]
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flashgate_descriptor.bin"));
