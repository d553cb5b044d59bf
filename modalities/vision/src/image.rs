//! Image types: the stored 8-bit record (decoded, or encoded on disk for streaming) and the
//! float working image the augmentations transform.

use ssl_framework::data::DataError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

    /// Converts the `width x height` region at `(left, top)` of an 8-bit image to floats in
    /// `[0, 1]` (clamped to the image).
    pub fn from_stored_region(
        s: &StoredImage,
        left: usize,
        top: usize,
        width: usize,
        height: usize,
    ) -> Self {
        let (sw, sh) = (s.width as usize, s.height as usize);
        let (left, top) = (left.min(sw), top.min(sh));
        let (width, height) = (width.min(sw - left), height.min(sh - top));
        let mut data = Vec::with_capacity(width * height * 3);
        for y in top..top + height {
            let row = &s.pixels[(y * sw + left) * 3..(y * sw + left + width) * 3];
            data.extend(row.iter().map(|&v| v as f32 * (1.0 / 255.0)));
        }
        Self {
            width,
            height,
            data,
        }
    }

    /// The pixel at `(x, y)`.
    pub fn pixel(&self, x: usize, y: usize) -> [f32; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// Where the encoded bytes of a streamed image are.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// An image file.
    File(PathBuf),
    /// A member of a tar shard: `len` bytes at byte `offset` of `shard`.
    TarMember {
        /// The shard file.
        shard: Arc<PathBuf>,
        /// The member's name in the shard (for messages).
        name: Box<str>,
        /// Byte offset of the member's data in the shard.
        offset: u64,
        /// The member's size in bytes.
        len: u64,
    },
}

impl ImageSource {
    /// Reads the encoded bytes (one positioned read for a tar member).
    ///
    /// # Errors
    /// [`DataError::Io`] naming the file (or `shard.tar:member`).
    pub fn read(&self) -> Result<Vec<u8>, DataError> {
        match self {
            ImageSource::File(path) => std::fs::read(path).map_err(|source| DataError::Io {
                path: path.clone(),
                source,
            }),
            ImageSource::TarMember {
                shard, offset, len, ..
            } => {
                use std::os::unix::fs::FileExt;
                let io = |source| DataError::Io {
                    path: self.path(),
                    source,
                };
                let file = std::fs::File::open(shard.as_path()).map_err(io)?;
                let mut bytes = vec![0u8; *len as usize];
                file.read_exact_at(&mut bytes, *offset).map_err(io)?;
                Ok(bytes)
            }
        }
    }

    /// The path that names it in messages: the file, or `shard.tar:member`.
    pub fn path(&self) -> PathBuf {
        match self {
            ImageSource::File(path) => path.clone(),
            ImageSource::TarMember { shard, name, .. } => {
                PathBuf::from(format!("{}:{name}", shard.display()))
            }
        }
    }
}

/// An image read from storage when a batch needs it (streaming): its source and, when the
/// index read its header, its size.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedImage {
    /// Where the bytes are.
    pub source: ImageSource,
    /// Width in pixels from the file's header (0 when not read, e.g. in tar shards).
    pub width: u32,
    /// Height in pixels (0 when not read).
    pub height: u32,
    /// Whether a view that starts with a random resized crop may decode this image (a JPEG)
    /// at a reduced scale when the crop is at least 4 times its output size
    /// (`data.decode_at_crop_scale`; see [`crate::crop_decode`]).
    pub decode_at_crop_scale: bool,
}

impl EncodedImage {
    /// Reads and decodes the image into 8-bit RGB.
    ///
    /// # Errors
    /// [`DataError::Io`] or [`DataError::Corrupt`] naming the file.
    pub fn decode(&self) -> Result<StoredImage, DataError> {
        let bytes = self.source.read()?;
        decode_bytes(&self.source.path(), &bytes)
    }

    /// The size in bytes of the decoded 8-bit RGB image (0 when the size is not known).
    pub fn decoded_bytes(&self) -> u64 {
        self.width as u64 * self.height as u64 * 3
    }
}

/// A record of a vision dataset: decoded in memory (CIFAR, IDX, small image folders), or read
/// and decoded in the loader's workers when its batch is prepared (large image folders, tar
/// shards; `data.streaming`).
#[derive(Debug, Clone, PartialEq)]
pub enum ImageRecord {
    /// Decoded at load.
    Decoded(StoredImage),
    /// Decoded when used.
    Encoded(EncodedImage),
}

impl ImageRecord {
    /// The decoded image (decoding an [`ImageRecord::Encoded`] one now).
    ///
    /// # Errors
    /// [`DataError::Io`] or [`DataError::Corrupt`] naming the file.
    pub fn decode(&self) -> Result<std::borrow::Cow<'_, StoredImage>, DataError> {
        match self {
            ImageRecord::Decoded(img) => Ok(std::borrow::Cow::Borrowed(img)),
            ImageRecord::Encoded(enc) => enc.decode().map(std::borrow::Cow::Owned),
        }
    }
}

/// Decodes the bytes of an image file (any format of [`EXTENSIONS`](crate::readers::image_folder::EXTENSIONS)) into 8-bit RGB (`path` only names it in errors).
/// The `image` crate's default limits apply (at most 512 MiB decoded).
///
/// # Errors
/// [`DataError::Corrupt`] naming `path` when the bytes are not a decodable image.
pub fn decode_bytes(path: &Path, bytes: &[u8]) -> Result<StoredImage, DataError> {
    let img = image::load_from_memory(bytes).map_err(|e| DataError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let rgb = img.to_rgb8();
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(DataError::Corrupt {
            path: path.to_path_buf(),
            reason: "empty image".into(),
        });
    }
    Ok(StoredImage {
        width: rgb.width(),
        height: rgb.height(),
        pixels: rgb.into_raw(),
    })
}
