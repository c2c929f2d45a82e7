//! Pipeline cache: a compute pipeline is compiled once per [`Kernel`] and kept for the life of
//! the engine. Each kernel family has one explicit bind-group layout, made from its slot table.

use super::kernel::{BindingKind, Family, Kernel};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) struct PipelineCache {
    layouts: HashMap<Family, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    pipelines: Mutex<HashMap<Kernel, Arc<wgpu::ComputePipeline>>>,
    created: AtomicU64,
}

fn entry(binding: u32, kind: BindingKind) -> wgpu::BindGroupLayoutEntry {
    let ty = match kind {
        BindingKind::Storage => wgpu::BufferBindingType::Storage { read_only: false },
        BindingKind::ReadOnly => wgpu::BufferBindingType::Storage { read_only: true },
        BindingKind::Uniform => wgpu::BufferBindingType::Uniform,
    };
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn layout_entries(family: Family) -> Vec<wgpu::BindGroupLayoutEntry> {
    family
        .slots()
        .iter()
        .map(|&(_, binding, kind)| entry(binding, kind))
        .collect()
}

impl PipelineCache {
    pub fn new(device: &wgpu::Device) -> Self {
        let mut layouts = HashMap::new();
        for family in Family::ALL {
            let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("smoothmax/bgl"),
                entries: &layout_entries(family),
            });
            let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("smoothmax/pl"),
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
            layouts.insert(family, (bgl, pl));
        }
        PipelineCache {
            layouts,
            pipelines: Mutex::new(HashMap::new()),
            created: AtomicU64::new(0),
        }
    }

    /// Pipelines compiled since the cache was made (for tests and reports).
    /// The entry points of `family` compiled so far (for tests that prove a kernel ran).
    #[cfg(test)]
    pub fn entries_of(&self, family: Family) -> Vec<super::kernel::Entry> {
        self.pipelines
            .lock()
            .map(|m| {
                m.keys()
                    .filter(|k| k.family == family)
                    .map(|k| k.entry)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    pub fn bind_group_layout(&self, family: Family) -> &wgpu::BindGroupLayout {
        &self.layouts[&family].0
    }

    /// The pipeline of `key`, compiling it on first use. Compilation errors (a bug, or a
    /// driver that rejects valid WGSL) come back as [`Error::Validation`].
    pub fn get(&self, device: &wgpu::Device, key: Kernel) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut map = self
            .pipelines
            .lock()
            .map_err(|_| Error::Validation("pipeline cache poisoned by a panic".into()))?;
        if let Some(p) = map.get(&key) {
            return Ok(p.clone());
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let label = key.label();
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(key.source().into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&self.layouts[&key.family].1),
            module: &module,
            entry_point: Some(key.entry.name()),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Validation(format!("compiling {label}: {e}")));
        }
        self.created.fetch_add(1, Ordering::Relaxed);
        let p = Arc::new(pipeline);
        map.insert(key, p.clone());
        Ok(p)
    }
}
