//! What a launch is: a named task closure plus the buffers it reads
//! (inputs) and writes (outputs). [`Launch`] is the builder callers fill
//! in; [`Node`] is the validated form streams and graphs run, with a lock
//! plan that takes every buffer's lock once, in buffer-id order, so that
//! launches on different streams can never deadlock on each other.

use std::borrow::Cow;
use std::sync::Arc;

use crate::buffer::{DeviceBuffer, ErasedBuffer};
use crate::error::{RuntimeError, TaskError};
use crate::kernel::Kernel;
use crate::pod::Pod;

/// The closure of a launch. It gets the launch's buffers through
/// [`Kernel`] and may be run many times (graph replay).
pub type Task = Arc<dyn Fn(&Kernel<'_>) -> Result<(), TaskError> + Send + Sync>;

/// A kernel launch being built: name, task, inputs, outputs.
///
/// ```
/// use exodus_runtime::{CpuDevice, Device, Launch};
///
/// let dev = CpuDevice::new();
/// let x = dev.upload(&[1.0f32, 2.0, 3.0])?;
/// let y = dev.alloc::<f32>(3)?;
/// let stream = dev.create_stream()?;
/// stream.launch(
///     Launch::new("double", |k| {
///         let x = k.input::<f32>(0)?;
///         let mut y = k.output::<f32>(0)?;
///         for (y, x) in y.iter_mut().zip(x.iter()) {
///             *y = 2.0 * x;
///         }
///         Ok(())
///     })
///     .input(&x)
///     .output(&y),
/// )?;
/// stream.synchronize()?;
/// assert_eq!(y.to_host(), [2.0, 4.0, 6.0]);
/// # Ok::<(), exodus_runtime::RuntimeError>(())
/// ```
pub struct Launch {
    pub(crate) name: Cow<'static, str>,
    pub(crate) category: &'static str,
    pub(crate) task: Task,
    pub(crate) inputs: Vec<Arc<dyn ErasedBuffer>>,
    pub(crate) outputs: Vec<Arc<dyn ErasedBuffer>>,
}

impl Launch {
    /// A launch of `task` under `name` (the name shown in traces and errors).
    pub fn new<F>(name: impl Into<Cow<'static, str>>, task: F) -> Self
    where
        F: Fn(&Kernel<'_>) -> Result<(), TaskError> + Send + Sync + 'static,
    {
        Self::from_task(name, Arc::new(task))
    }

    /// A launch of a shared task (no new allocation for the closure).
    pub fn from_task(name: impl Into<Cow<'static, str>>, task: Task) -> Self {
        Launch {
            name: name.into(),
            category: "launch",
            task,
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Adds a buffer the task reads (`k.input(i)`, in the order added).
    pub fn input<T: Pod>(mut self, buffer: &DeviceBuffer<T>) -> Self {
        self.inputs.push(buffer.erased());
        self
    }

    /// Adds a buffer the task writes or updates in place (`k.output(i)`).
    pub fn output<T: Pod>(mut self, buffer: &DeviceBuffer<T>) -> Self {
        self.outputs.push(buffer.erased());
        self
    }

    /// The launch's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn with_category(mut self, category: &'static str) -> Self {
        self.category = category;
        self
    }
}

/// Which locks a task takes (indices into a buffer table, write or not,
/// sorted by buffer id, each buffer once) and where each argument is.
#[derive(Clone)]
pub(crate) struct Plan {
    pub(crate) locks: Vec<(usize, bool)>,
    pub(crate) inputs: Vec<usize>,
    pub(crate) outputs: Vec<usize>,
}

impl Plan {
    /// The plan of a task whose inputs and outputs are `inputs`/`outputs`
    /// (indices into a buffer table whose ids are `ids`). A written buffer
    /// may appear only once.
    pub(crate) fn new(
        task: &str,
        ids: &[u64],
        inputs: &[usize],
        outputs: &[usize],
    ) -> Result<Plan, RuntimeError> {
        let mut args: Vec<(u64, usize, bool)> = inputs
            .iter()
            .map(|&t| (ids[t], t, false))
            .chain(outputs.iter().map(|&t| (ids[t], t, true)))
            .collect();
        args.sort_unstable();
        let mut locks: Vec<(usize, bool)> = Vec::with_capacity(args.len());
        let mut ids_sorted: Vec<u64> = Vec::with_capacity(args.len());
        for (id, t, write) in args {
            if ids_sorted.last() == Some(&id) {
                // Repeated buffer: fine if every use reads it.
                if write || locks.last().is_some_and(|l| l.1) {
                    return Err(RuntimeError::ArgAliased {
                        task: task.to_owned(),
                        buffer: id,
                    });
                }
                continue;
            }
            ids_sorted.push(id);
            locks.push((t, write));
        }
        let slot = |t: &usize| ids_sorted.binary_search(&ids[*t]).unwrap_or(0);
        Ok(Plan {
            inputs: inputs.iter().map(slot).collect(),
            outputs: outputs.iter().map(slot).collect(),
            locks,
        })
    }
}

/// A validated launch: what a stream queues and a graph replays.
#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) name: Cow<'static, str>,
    pub(crate) category: &'static str,
    pub(crate) task: Task,
    pub(crate) plan: Plan,
}

impl Launch {
    /// Checks the arguments (a written buffer appears once) and returns
    /// the lock plan over the table "inputs then outputs".
    pub(crate) fn plan(&self) -> Result<Plan, RuntimeError> {
        let ids: Vec<u64> = self
            .inputs
            .iter()
            .chain(&self.outputs)
            .map(|b| b.id())
            .collect();
        let n_in = self.inputs.len();
        let inputs: Vec<usize> = (0..n_in).collect();
        let outputs: Vec<usize> = (n_in..ids.len()).collect();
        Plan::new(&self.name, &ids, &inputs, &outputs)
    }

    /// The node (with its `plan`) and its buffer table.
    pub(crate) fn into_node(self, plan: Plan) -> (Node, Vec<Arc<dyn ErasedBuffer>>) {
        let mut table = self.inputs;
        table.extend(self.outputs);
        let node = Node {
            name: self.name,
            category: self.category,
            task: self.task,
            plan,
        };
        (node, table)
    }
}
