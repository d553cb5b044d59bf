//! Image types: the stored 8-bit record and the float working image the augmentations transform.

/// A decoded image as kept in memory: 8-bit RGB, row-major, interleaved (`[height, width, 3]`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `height * width * 3` bytes.
    pub pixels: Vec<u8>,
}

/// The working image of the augmentations: RGB floats, row-major, interleaved
/// (`[height, width, 3]`), values in `[0, 1]` until [`Normalize`](crate::augment::Normalize).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height * width * 3` values.
    pub data: Vec<f32>,
}

impl Image {
    /// A `width x height` image filled with `value`.
    pub fn filled(width: usize, height: usize, value: f32) -> Self {
        Self {
            width,
            height,
            data: vec![value; width * height * 3],
        }
    }

    /// Converts an 8-bit image to floats in `[0, 1]`.
    pub fn from_stored(s: &StoredImage) -> Self {
        Self {
            width: s.width as usize,
            height: s.height as usize,
            data: s.pixels.iter().map(|&v| v as f32 * (1.0 / 255.0)).collect(),
        }
    }

    /// The pixel at `(x, y)`.
    pub fn pixel(&self, x: usize, y: usize) -> [f32; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}
