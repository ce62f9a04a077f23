//! `GET /1.0/resources`: LXD 5.0's `shared/api/resource.go`, field for field (`omitempty`
//! fields are left out while empty, pointers are `Option`). Sections silo does not read
//! (SR-IOV, NVIDIA, mdev, InfiniBand) stay free-form and absent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The host's resources (`GET /1.0/resources`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// CPUs.
    pub cpu: ResourcesCPU,
    /// Memory.
    pub memory: ResourcesMemory,
    /// GPUs.
    pub gpu: ResourcesGPU,
    /// Network cards.
    pub network: ResourcesNetwork,
    /// Disks.
    pub storage: ResourcesStorage,
    /// USB devices.
    pub usb: ResourcesUSB,
    /// PCI devices.
    pub pci: ResourcesPCI,
    /// The machine.
    pub system: ResourcesSystem,
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
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Vendor.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vendor: String,
    /// Socket number.
    pub socket: u64,
    /// Caches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<ResourcesCPUCache>,
    /// Cores.
    pub cores: Vec<ResourcesCPUCore>,
    /// MHz (the cores' average).
    #[serde(skip_serializing_if = "crate::is_zero_u64")]
    pub frequency: u64,
    /// Minimum MHz.
    #[serde(skip_serializing_if = "crate::is_zero_u64")]
    pub frequency_minimum: u64,
    /// Turbo MHz.
    #[serde(skip_serializing_if = "crate::is_zero_u64")]
    pub frequency_turbo: u64,
}

/// One CPU cache.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesCPUCache {
    /// Level.
    pub level: u64,
    /// "Data", "Instruction" or "Unified".
    #[serde(rename = "type")]
    pub kind: String,
    /// Bytes.
    pub size: u64,
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
    #[serde(skip_serializing_if = "crate::is_zero_u64")]
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

/// GPUs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesGPU {
    /// The cards.
    pub cards: Vec<ResourcesGPUCard>,
    /// How many.
    pub total: u64,
}

/// One GPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesGPUCard {
    /// Kernel driver.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// Its version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub driver_version: String,
    /// DRM nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drm: Option<ResourcesGPUCardDRM>,
    /// SR-IOV (silo: not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sriov: Option<Value>,
    /// NVIDIA details (silo: not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nvidia: Option<Value>,
    /// Mediated devices (silo: not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mdev: Option<Value>,
    /// NUMA node.
    pub numa_node: u64,
    /// PCI address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pci_address: String,
    /// Vendor name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vendor: String,
    /// Vendor id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vendor_id: String,
    /// Product name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub product: String,
    /// Product id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub product_id: String,
    /// USB address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub usb_address: String,
}

/// A GPU's DRM nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesGPUCardDRM {
    /// DRM card number.
    pub id: u64,
    /// e.g. "card0".
    pub card_name: String,
    /// "major:minor".
    pub card_device: String,
    /// Control node.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub control_name: String,
    /// Its "major:minor".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub control_device: String,
    /// Render node.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub render_name: String,
    /// Its "major:minor".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub render_device: String,
}

/// Network cards.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesNetwork {
    /// The cards.
    pub cards: Vec<ResourcesNetworkCard>,
    /// How many.
    pub total: u64,
}

/// One network card.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesNetworkCard {
    /// Kernel driver.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// Its version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub driver_version: String,
    /// Ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ResourcesNetworkCardPort>,
    /// SR-IOV (silo: not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sriov: Option<Value>,
    /// NUMA node.
    pub numa_node: u64,
    /// PCI address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pci_address: String,
    /// Vendor name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vendor: String,
    /// Vendor id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vendor_id: String,
    /// Product name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub product: String,
    /// Product id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub product_id: String,
    /// Firmware version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub firmware_version: String,
    /// USB address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub usb_address: String,
}

/// One port of a network card.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesNetworkCardPort {
    /// Interface name.
    pub id: String,
    /// MAC address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Port number.
    pub port: u64,
    /// "ethernet" or "infiniband".
    pub protocol: String,
    /// Supported link modes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supported_modes: Vec<String>,
    /// Supported port types.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supported_ports: Vec<String>,
    /// Port type.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub port_type: String,
    /// Transceiver type.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub transceiver_type: String,
    /// Auto negotiation.
    pub auto_negotiation: bool,
    /// Carrier.
    pub link_detected: bool,
    /// Mbit/s.
    #[serde(skip_serializing_if = "crate::is_zero_u64")]
    pub link_speed: u64,
    /// "full" or "half".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub link_duplex: String,
    /// InfiniBand details (silo: not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infiniband: Option<Value>,
}

/// Disks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesStorage {
    /// The disks.
    pub disks: Vec<ResourcesStorageDisk>,
    /// How many.
    pub total: u64,
}

/// One disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesStorageDisk {
    /// Kernel name.
    pub id: String,
    /// "major:minor".
    pub device: String,
    /// Model.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Bus subsystem ("virtio", "scsi", "nvme"...), or "cdrom".
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Read-only.
    pub read_only: bool,
    /// Bytes.
    pub size: u64,
    /// Removable.
    pub removable: bool,
    /// World wide name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub wwn: String,
    /// NUMA node.
    pub numa_node: u64,
    /// /dev/disk/by-path name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub device_path: String,
    /// Logical block size.
    pub block_size: u64,
    /// Firmware version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub firmware_version: String,
    /// Rotation speed (1: rotational, speed unknown).
    pub rpm: u64,
    /// Serial number.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub serial: String,
    /// /dev/disk/by-id name.
    pub device_id: String,
    /// Partitions.
    pub partitions: Vec<ResourcesStorageDiskPartition>,
    /// PCI address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pci_address: String,
    /// USB address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub usb_address: String,
}

/// One partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesStorageDiskPartition {
    /// Kernel name.
    pub id: String,
    /// "major:minor".
    pub device: String,
    /// Read-only.
    pub read_only: bool,
    /// Bytes.
    pub size: u64,
    /// Number.
    pub partition: u64,
}

/// Memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesMemory {
    /// NUMA nodes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<ResourcesMemoryNode>,
    /// Huge page bytes in all.
    pub hugepages_total: u64,
    /// Huge page bytes used.
    pub hugepages_used: u64,
    /// Huge page size.
    pub hugepages_size: u64,
    /// Bytes used.
    pub used: u64,
    /// Bytes in all.
    pub total: u64,
}

/// One NUMA node's memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesMemoryNode {
    /// Node number.
    pub numa_node: u64,
    /// Huge page bytes used.
    pub hugepages_used: u64,
    /// Huge page bytes in all.
    pub hugepages_total: u64,
    /// Bytes used.
    pub used: u64,
    /// Bytes in all.
    pub total: u64,
}

/// USB devices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesUSB {
    /// The devices.
    pub devices: Vec<ResourcesUSBDevice>,
    /// How many.
    pub total: u64,
}

/// One USB device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesUSBDevice {
    /// Bus number.
    pub bus_address: u64,
    /// Device number.
    pub device_address: u64,
    /// Interfaces.
    pub interfaces: Vec<ResourcesUSBDeviceInterface>,
    /// Vendor name.
    pub vendor: String,
    /// Vendor id.
    pub vendor_id: String,
    /// Product name.
    pub product: String,
    /// Product id.
    pub product_id: String,
    /// Mbit/s.
    pub speed: f64,
}

/// One USB interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesUSBDeviceInterface {
    /// Class name.
    pub class: String,
    /// Class id.
    pub class_id: u64,
    /// Kernel driver.
    pub driver: String,
    /// Its version.
    pub driver_version: String,
    /// Interface number.
    pub number: u64,
    /// Subclass name.
    pub subclass: String,
    /// Subclass id.
    pub subclass_id: u64,
}

/// PCI devices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesPCI {
    /// The devices.
    pub devices: Vec<ResourcesPCIDevice>,
    /// How many.
    pub total: u64,
}

/// One PCI device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesPCIDevice {
    /// Kernel driver.
    pub driver: String,
    /// Its version.
    pub driver_version: String,
    /// NUMA node.
    pub numa_node: u64,
    /// PCI address.
    pub pci_address: String,
    /// Vendor name.
    pub vendor: String,
    /// Vendor id.
    pub vendor_id: String,
    /// Product name.
    pub product: String,
    /// Product id.
    pub product_id: String,
    /// IOMMU group.
    pub iommu_group: u64,
    /// Vital product data.
    pub vpd: ResourcesPCIVPD,
}

/// A PCI device's vital product data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesPCIVPD {
    /// Product name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub product_name: String,
    /// Entries.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub entries: BTreeMap<String, String>,
}

/// The machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesSystem {
    /// DMI UUID (root-only on most hosts: silo leaves it empty when unreadable).
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
    /// Serial number (root-only: see `uuid`).
    pub serial: String,
    /// "physical", "virtual-machine", "container" or "unknown".
    #[serde(rename = "type")]
    pub kind: String,
    /// Firmware.
    pub firmware: Option<ResourcesSystemFirmware>,
    /// Chassis.
    pub chassis: Option<ResourcesSystemChassis>,
    /// Motherboard.
    pub motherboard: Option<ResourcesSystemMotherboard>,
}

/// Firmware.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesSystemFirmware {
    /// Vendor.
    pub vendor: String,
    /// Date.
    pub date: String,
    /// Version.
    pub version: String,
}

/// Chassis.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesSystemChassis {
    /// Vendor.
    pub vendor: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Serial number.
    pub serial: String,
    /// Version.
    pub version: String,
}

/// Motherboard.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesSystemMotherboard {
    /// Vendor.
    pub vendor: String,
    /// Product.
    pub product: String,
    /// Serial number.
    pub serial: String,
    /// Version.
    pub version: String,
}
