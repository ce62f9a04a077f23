//! `GET /1.0/resources`, as far as silo fills it in: CPUs and memory; the other sections are
//! sent empty and kept free-form here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The host's resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// CPUs.
    pub cpu: ResourcesCPU,
    /// Memory.
    pub memory: ResourcesMemory,
    /// GPUs (silo: none listed).
    pub gpu: ResourcesGPU,
    /// Network cards (silo: none listed).
    pub network: ResourcesNetwork,
    /// Disks (silo: none listed).
    pub storage: ResourcesStorage,
    /// USB devices (silo: none listed).
    pub usb: ResourcesUSB,
    /// PCI devices (silo: none listed).
    pub pci: ResourcesPCI,
    /// The machine.
    pub system: ResourcesSystem,
}

/// GPUs (silo lists none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesGPU {
    /// The items (free-form).
    pub cards: Vec<Value>,
    /// How many.
    pub total: u64,
}

/// Network cards (silo lists none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesNetwork {
    /// The items (free-form).
    pub cards: Vec<Value>,
    /// How many.
    pub total: u64,
}

/// Disks (silo lists none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesStorage {
    /// The items (free-form).
    pub disks: Vec<Value>,
    /// How many.
    pub total: u64,
}

/// USB devices (silo lists none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesUSB {
    /// The items (free-form).
    pub devices: Vec<Value>,
    /// How many.
    pub total: u64,
}

/// PCI devices (silo lists none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesPCI {
    /// The items (free-form).
    pub devices: Vec<Value>,
    /// How many.
    pub total: u64,
}

/// CPUs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesCPU {
    /// e.g. "x86_64".
    pub architecture: String,
    /// Sockets.
    pub sockets: Vec<ResourcesCPUSocket>,
    /// Threads in all.
    pub total: u64,
}

/// One CPU socket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesCPUSocket {
    /// Model name.
    pub name: String,
    /// Vendor.
    pub vendor: String,
    /// Socket number.
    pub socket: u64,
    /// Cores.
    pub cores: Vec<ResourcesCPUCore>,
    /// Caches (free-form; silo lists none).
    pub cache: Vec<Value>,
    /// MHz.
    pub frequency: u64,
    /// Minimum MHz.
    pub frequency_minimum: u64,
    /// Turbo MHz.
    pub frequency_turbo: u64,
}

/// One core.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesCPUCore {
    /// Core number.
    pub core: u64,
    /// Die number.
    pub die: u64,
    /// Threads.
    pub threads: Vec<ResourcesCPUThread>,
    /// MHz.
    pub frequency: u64,
}

/// One hardware thread.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesCPUThread {
    /// Logical CPU id.
    pub id: i64,
    /// NUMA node.
    pub numa_node: u64,
    /// Thread number in its core.
    pub thread: u64,
    /// Online.
    pub online: bool,
    /// Isolated from the scheduler.
    pub isolated: bool,
}

/// Memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesMemory {
    /// NUMA nodes (free-form; silo lists none).
    pub nodes: Vec<Value>,
    /// Huge pages in all.
    pub hugepages_total: u64,
    /// Huge pages used.
    pub hugepages_used: u64,
    /// Huge page size.
    pub hugepages_size: u64,
    /// Bytes used.
    pub used: u64,
    /// Bytes in all.
    pub total: u64,
}

/// The machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesSystem {
    /// DMI UUID.
    pub uuid: String,
    /// Vendor.
    pub vendor: String,
    /// Product.
    pub product: String,
    /// Family.
    pub family: String,
    /// Version.
    pub version: String,
    /// SKU.
    pub sku: String,
    /// Serial number.
    pub serial: String,
    /// "physical", "container", "unknown", ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Firmware (free-form; silo: null).
    pub firmware: Option<Value>,
    /// Chassis (free-form; silo: null).
    pub chassis: Option<Value>,
    /// Motherboard (free-form; silo: null).
    pub motherboard: Option<Value>,
}
