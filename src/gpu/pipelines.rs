//! Pipeline cache: a compute pipeline is compiled once per (shader variant, entry point) and
//! kept for the life of the engine. Each kernel family has one explicit bind-group layout.

use super::shaders::{BindingKind, Family, ShaderKey};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Everything that identifies a compiled pipeline.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    pub shader: ShaderKey,
    pub entry: &'static str,
}

pub(crate) struct PipelineCache {
    layouts: HashMap<Family, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
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
    let mut e = vec![
        entry(0, BindingKind::Uniform), // params
        // x: read-write only where the gradient is written over the logits
        entry(
            1,
            if family == Family::CrossEntropyInPlace {
                BindingKind::Storage
            } else {
                BindingKind::ReadOnly
            },
        ),
        entry(2, BindingKind::Storage), // y
        entry(3, BindingKind::Storage), // partials
    ];
    e.extend(family.extra_bindings().iter().map(|&(b, k)| entry(b, k)));
    e
}

impl PipelineCache {
    pub fn new(device: &wgpu::Device) -> Self {
        let mut layouts = HashMap::new();
        for family in [
            Family::LogSumExp,
            Family::Softmax,
            Family::CrossEntropy,
            Family::CrossEntropyInPlace,
            Family::Yardstick,
            Family::SurrogateRows,
            Family::Pointwise,
        ] {
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
    pub fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    pub fn bind_group_layout(&self, family: Family) -> &wgpu::BindGroupLayout {
        &self.layouts[&family].0
    }

    /// The pipeline for `key`, compiling it on first use. Compilation errors (a bug, or a
    /// driver that rejects valid WGSL) come back as [`Error::Validation`].
    pub fn get(
        &self,
        device: &wgpu::Device,
        key: PipelineKey,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut map = self
            .pipelines
            .lock()
            .map_err(|_| Error::Validation("pipeline cache poisoned by a panic".into()))?;
        if let Some(p) = map.get(&key) {
            return Ok(p.clone());
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let label = format!("{}:{}", key.shader.label(), key.entry);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(key.shader.source().into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&self.layouts[&key.shader.family].1),
            module: &module,
            entry_point: Some(key.entry),
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
