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
        if self.sums.is_empty() {
            return None;
        }
        let values = Tensor::cat(self.sums, 0)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        values
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| self.names[i].clone())
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
