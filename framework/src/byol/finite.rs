//! Finding non-finite values in gradients and parameters (numerical faults), with the name of
//! the parameter they are in.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;

/// Tracks the module path (`encoder.blocks.0.conv.weight`) while a visitor walks a module.
#[derive(Default)]
struct PathStack(Vec<String>);

impl PathStack {
    fn name(&self, id: ParamId) -> String {
        if self.0.is_empty() {
            format!("parameter {id}")
        } else {
            self.0.join(".")
        }
    }
}

/// Per-parameter `sum(|x|)` (non-finite exactly when some element is), all gathered in one
/// tensor so that checking costs one device sync.
struct AbsSums<'a> {
    grads: Option<&'a GradientsParams>,
    path: PathStack,
    names: Vec<String>,
    sums: Vec<Tensor<1>>,
}

impl AbsSums<'_> {
    fn push<const D: usize>(&mut self, id: ParamId, t: Tensor<D>) {
        self.names.push(self.path.name(id));
        self.sums.push(t.abs().sum());
    }

    /// The first entry whose sum is not finite.
    fn first_non_finite(self) -> Option<String> {
        self.read_after(None).1
    }

    /// `head`'s values (`[n]`, when given) and the first entry whose sum is not finite, read
    /// to the host in one transfer. A failed read is a fault, never a pass: NaN values, and
    /// the entries named as unreadable.
    fn read_after(self, head: Option<Tensor<1>>) -> (Vec<f32>, Option<String>) {
        let n = head.as_ref().map_or(0, |h| h.dims()[0]);
        let checked = !self.names.is_empty();
        let parts: Vec<Tensor<1>> = head.into_iter().chain(self.sums).collect();
        if parts.is_empty() {
            return (Vec::new(), None);
        }
        let Ok(values) = Tensor::cat(parts, 0)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
        else {
            let unread = "tensors that could not be read back from the device".to_string();
            return (vec![f32::NAN; n], checked.then_some(unread));
        };
        let bad = values[n..]
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| self.names[i].clone());
        (values[..n].to_vec(), bad)
    }
}

impl ModuleVisitor for AbsSums<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.0.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.0.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match self.grads {
            Some(grads) => {
                if let Some(g) = grads.get::<D>(param.id) {
                    self.push(param.id, g);
                }
            }
            None => self.push(param.id, param.val().detach()),
        }
    }
}

/// The name of the first parameter of `module` whose gradient in `grads` holds a NaN or an
/// infinity, or `None` when every gradient is finite.
pub fn non_finite_gradient<M: Module>(module: &M, grads: &GradientsParams) -> Option<String> {
    let mut v = AbsSums {
        grads: Some(grads),
        path: PathStack::default(),
        names: Vec::new(),
        sums: Vec::new(),
    };
    module.visit(&mut v);
    v.first_non_finite()
}

/// `values` (`[n]`, e.g. a step's loss terms) read to the host together with the gradient
/// check of [`non_finite_gradient`] on `module`'s gradients in `grads` (when given), in one
/// transfer: on a GPU each read waits for the queued work, so the BYOL step reads once.
/// Returns the `n` values and the name of the first parameter whose gradient holds a NaN or
/// an infinity. A failed read gives NaN values.
pub fn read_with_gradient_check<M: Module>(
    values: Tensor<1>,
    grads: Option<(&M, &GradientsParams)>,
) -> (Vec<f32>, Option<String>) {
    let mut v = AbsSums {
        grads: None,
        path: PathStack::default(),
        names: Vec::new(),
        sums: Vec::new(),
    };
    if let Some((module, grads)) = grads {
        v.grads = Some(grads);
        module.visit(&mut v);
    }
    v.read_after(Some(values))
}

/// The name of the first float tensor of `module` (parameters and buffers such as BatchNorm
/// running statistics) that holds a NaN or an infinity, or `None`.
pub fn non_finite_parameter<M: Module>(module: &M) -> Option<String> {
    let mut v = AbsSums {
        grads: None,
        path: PathStack::default(),
        names: Vec::new(),
        sums: Vec::new(),
    };
    module.visit(&mut v);
    v.first_non_finite()
}
