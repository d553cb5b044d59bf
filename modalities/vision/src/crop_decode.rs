//! Views of a streamed JPEG decoded at the scale its random crop needs: a view that starts with
//! [`RandomResizedCrop`] draws its crop box on the image's size (from the header, before any
//! pixel is decoded) and, when the box is at least 4 times the crop's output size in both
//! sides, decodes the image with JPEG's scaled IDCT at 1/4 or 1/8 of its size (`jpeg-decoder`)
//! and crops the scaled box. A 4000x3000 photo cropped to 224 then costs a 1000x750 or 500x375
//! decode instead of a 12-megapixel one.
//!
//! Only 1/4 and 1/8 are used: measured on 500x375 JPEGs (BENCHMARKS.md), `jpeg-decoder`'s 1/2
//! decode is slower than the `image` crate's full decode (zune-jpeg), and its 1/4 decode about
//! as fast. Every other view, and every image that is not a JPEG, takes the full decode, once
//! per record. The random draws are those of the full path (the crop box is drawn by the same
//! [`RandomResizedCrop::sample_box`], then the rest of the view's ops), so only the pixels
//! differ, by the difference between the IDCT's scaling and the crop's resampling.

use crate::augment::{RandomResizedCrop, VisionOp};
use crate::image::{EncodedImage, Image, StoredImage};
use rand::rngs::StdRng;
use ssl_framework::augmentation::{AugmentContext, SampleSource};
use ssl_framework::data::DataError;

/// The reduced scales tried, largest reduction first (the denominator of the scale).
const SCALES: [usize; 2] = [8, 4];

/// The images smaller than this (either side) never take a reduced scale: a 1/4 scale of a
/// box inside them is below any useful crop size.
const MIN_SIDE: u32 = 256;

/// The crop op of a pipeline that starts with one.
fn leading_crop(ops: &[VisionOp]) -> Option<RandomResizedCrop> {
    let first = ops.first()?;
    if first.name() != "RandomResizedCrop" {
        return None;
    }
    // The op's config form (`{ type = "RandomResizedCrop", size = ..., ... }`) without its tag.
    let mut value = serde_json::to_value(first).ok()?;
    value.as_object_mut()?.remove("type");
    serde_json::from_value(value).ok()
}

/// The largest reduction `k` (8 or 4) at which a `cw x ch` box still has `size` pixels a side.
pub fn reduction(cw: usize, ch: usize, size: usize) -> Option<usize> {
    SCALES
        .into_iter()
        .find(|&k| cw / k >= size && ch / k >= size)
}

/// Decodes the JPEG `bytes` at about `1 / k` of its size (`jpeg-decoder`'s scaled IDCT) into
/// 8-bit RGB; `None` when `jpeg-decoder` cannot (a CMYK JPEG, a coding it lacks, a corrupt
/// file): the full decode then decides.
fn decode_scaled(bytes: &[u8], k: usize) -> Option<StoredImage> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    let (w, h) = (info.width as usize, info.height as usize);
    let (sw, sh) = decoder
        .scale(w.div_ceil(k) as u16, h.div_ceil(k) as u16)
        .ok()?;
    let pixels = decoder.decode().ok()?;
    let (sw, sh) = (sw as u32, sh as u32);
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        _ => return None,
    };
    (rgb.len() == (sw * sh * 3) as usize && sw > 0 && sh > 0).then_some(StoredImage {
        width: sw,
        height: sh,
        pixels: rgb,
    })
}

/// The `(width, height)` in a JPEG's header, `None` when it does not parse.
fn jpeg_size(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    Some((info.width as usize, info.height as usize))
}

/// The views of an encoded image (see the module documentation): reads the bytes once, decodes
/// at a reduced scale the views whose crop allows it and in full (once) the others, then
/// applies each view's ops, drawing from `rng` in the order of the full path.
///
/// # Errors
/// [`DataError`] naming the file when it cannot be read or decoded.
pub fn views(
    enc: &EncodedImage,
    views: &[&[VisionOp]],
    rng: &mut StdRng,
    source: &dyn SampleSource<Image>,
) -> Result<Vec<Image>, DataError> {
    let bytes = enc.source.read()?;
    let jpeg = bytes.starts_with(&[0xFF, 0xD8]);
    // The size from the header in hand (the index's may be stale, and tar members have none).
    let (w, h) = if jpeg && enc.decode_at_crop_scale {
        jpeg_size(&bytes).unwrap_or((0, 0))
    } else {
        (0, 0)
    };
    let mut full: Option<StoredImage> = None;
    // Decodes at 1/8 and 1/4, each made at most once for the record's views.
    let mut reduced: [Option<Option<StoredImage>>; 2] = [None, None];
    let mut out = Vec::with_capacity(views.len());
    for ops in views {
        let mut ctx = AugmentContext::with_source(rng, source);
        let crop = (jpeg && enc.decode_at_crop_scale && w.min(h) >= MIN_SIDE as usize)
            .then(|| leading_crop(ops))
            .flatten();
        if let Some(crop) = crop {
            let (l, t, cw, ch) = crop.sample_box(w, h, ctx.rng);
            let scaled = match reduction(cw, ch, crop.size) {
                Some(k) => {
                    let slot = &mut reduced[SCALES.iter().position(|&s| s == k).unwrap_or(0)];
                    if slot.is_none() {
                        *slot = Some(decode_scaled(&bytes, k));
                    }
                    slot.as_ref().and_then(Option::as_ref)
                }
                None => None,
            };
            let cropped = match scaled {
                Some(s) => {
                    // The box in the reduced image's pixels, kept inside it (the reduced size is
                    // rounded up, so the scaled box can overshoot by a fraction of a pixel).
                    let (sw, sh) = (s.width as f64, s.height as f64);
                    let (x, y) = (l as f64 * sw / w as f64, t as f64 * sh / h as f64);
                    let bw = (cw as f64 * sw / w as f64).min(sw - x);
                    let bh = (ch as f64 * sh / h as f64).min(sh - y);
                    crate::augment::crop_resize(
                        &Image::from_stored(s),
                        x,
                        y,
                        bw,
                        bh,
                        crop.size,
                        crop.size,
                        crop.interpolation,
                    )
                }
                None => {
                    if full.is_none() {
                        full = Some(decode_full(enc, &bytes)?);
                    }
                    let f = full.as_ref().expect("decoded above");
                    if (f.width as usize, f.height as usize) != (w, h) {
                        return Err(DataError::Corrupt {
                            path: enc.source.path(),
                            reason: format!(
                                "its header says {w}x{h}, its pixels are {}x{}",
                                f.width, f.height
                            ),
                        });
                    }
                    // Only the box and the resampling filter's reach around it become floats
                    // (a bicubic filter reaches 2 output pixels, `2 * cw / size` input pixels).
                    let reach = 2 * cw.max(ch).div_ceil(crop.size) + 2;
                    let (x0, y0) = (l.saturating_sub(reach), t.saturating_sub(reach));
                    let region = Image::from_stored_region(
                        f,
                        x0,
                        y0,
                        cw + l - x0 + reach,
                        ch + t - y0 + reach,
                    );
                    crate::augment::crop_resize(
                        &region,
                        (l - x0) as f64,
                        (t - y0) as f64,
                        cw as f64,
                        ch as f64,
                        crop.size,
                        crop.size,
                        crop.interpolation,
                    )
                }
            };
            out.push(ops[1..].iter().fold(cropped, |x, op| op.apply(x, &mut ctx)));
        } else {
            if full.is_none() {
                full = Some(decode_full(enc, &bytes)?);
            }
            let img = Image::from_stored(full.as_ref().expect("decoded above"));
            out.push(ops.iter().fold(img, |x, op| op.apply(x, &mut ctx)));
        }
    }
    Ok(out)
}

fn decode_full(enc: &EncodedImage, bytes: &[u8]) -> Result<StoredImage, DataError> {
    crate::image::decode_bytes(&enc.source.path(), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduction_keeps_the_crop_size_and_prefers_the_larger_reduction() {
        assert_eq!(reduction(2000, 1800, 224), Some(8));
        assert_eq!(reduction(1000, 1800, 224), Some(4));
        assert_eq!(reduction(895, 2000, 224), None);
        assert_eq!(reduction(500, 375, 224), None);
    }
}
