//! The picture a "render" shows: a gradient, a texture and a few shapes whose colours and layout
//! come from a hash of the prompt (so different prompts look different at a glance), nudged by
//! the seed (so two takes of one prompt look alike but not identical), and a ball that bounces
//! across it over time (so the video moves).
//!
//! Coordinates are resolution-independent: `y` runs 0..1 down the picture and `x` runs
//! 0..aspect across it, so the thumbnail, the spritesheet and the small coded video frames all
//! show the same picture.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rgb {
    pub r: f32,
    pub g: f32,
    pub b: f32,
}

impl Rgb {
    /// Hue in turns (0..1), saturation and value in 0..1.
    fn from_hsv(hue: f32, saturation: f32, value: f32) -> Rgb {
        let h = hue.rem_euclid(1.0) * 6.0;
        let c = value * saturation;
        let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
        let (r, g, b) = match h as u32 {
            0 => (c, x, 0.0),
            1 => (x, c, 0.0),
            2 => (0.0, c, x),
            3 => (0.0, x, c),
            4 => (x, 0.0, c),
            _ => (c, 0.0, x),
        };
        let m = value - c;
        Rgb {
            r: r + m,
            g: g + m,
            b: b + m,
        }
    }

    fn mix(self, other: Rgb, t: f32) -> Rgb {
        Rgb {
            r: self.r + (other.r - self.r) * t,
            g: self.g + (other.g - self.g) * t,
            b: self.b + (other.b - self.b) * t,
        }
    }

    fn scale(self, factor: f32) -> Rgb {
        Rgb {
            r: (self.r * factor).clamp(0.0, 1.0),
            g: (self.g * factor).clamp(0.0, 1.0),
            b: (self.b * factor).clamp(0.0, 1.0),
        }
    }

    pub fn from_bytes([r, g, b]: [u8; 3]) -> Rgb {
        Rgb {
            r: f32::from(r) / 255.0,
            g: f32::from(g) / 255.0,
            b: f32::from(b) / 255.0,
        }
    }

    pub fn to_bytes(self) -> [u8; 3] {
        let byte = |v: f32| round(v.clamp(0.0, 1.0) * 255.0) as u8;
        [byte(self.r), byte(self.g), byte(self.b)]
    }
}

#[derive(Clone, Copy, Debug)]
enum Texture {
    /// `direction` is the (cos, sin) of the stripes' normal.
    Stripes {
        direction: (f32, f32),
        frequency: f32,
    },
    Checker {
        cell: f32,
    },
    Rings {
        cx: f32,
        cy: f32,
        frequency: f32,
    },
}

#[derive(Clone, Copy, Debug)]
enum Outline {
    Disc { radius: f32 },
    Rect { half_w: f32, half_h: f32 },
    Diamond { radius: f32 },
}

#[derive(Clone, Copy, Debug)]
struct Shape {
    outline: Outline,
    cx: f32,
    cy: f32,
    colour: Rgb,
}

/// The moving object: a triangle-wave bounce inside the picture.
#[derive(Clone, Copy, Debug)]
struct Ball {
    radius: f32,
    x0: f32,
    y0: f32,
    vx: f32,
    vy: f32,
    colour: Rgb,
}

#[derive(Clone, Debug)]
pub struct Scene {
    aspect: f32,
    top: Rgb,
    bottom: Rgb,
    /// Direction of the gradient from `top` to `bottom`, as (cos, sin) of its angle.
    gradient: (f32, f32),
    texture: Texture,
    shapes: Vec<Shape>,
    ball: Ball,
}

/// A box in picture units, `x` in 0..aspect and `y` in 0..1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    pub left: f32,
    pub top: f32,
    pub right: f32,
    pub bottom: f32,
}

impl Scene {
    /// `aspect` is width / height of the picture.
    pub fn new(seed: u64, prompt: &str, aspect: f32) -> Scene {
        let digest: [u8; 32] = Sha256::digest(prompt.as_bytes()).into();
        let mut look = ChaCha8Rng::from_seed(digest);
        let mut take = ChaCha8Rng::seed_from_u64(seed);
        let hue: f32 = look.random();
        let shift = look.random_range(0.08..0.5);
        let top = Rgb::from_hsv(
            hue,
            look.random_range(0.4..0.8),
            look.random_range(0.75..1.0),
        );
        let bottom = Rgb::from_hsv(hue + shift, look.random_range(0.5..0.9), 0.3);
        let texture = random_texture(&mut look, aspect);
        let count = look.random_range(3..=5);
        let shapes = (0..count)
            .map(|_| random_shape(&mut look, &mut take, aspect, hue))
            .collect();
        let ball = random_ball(&mut take, aspect, hue);
        Scene {
            aspect,
            top,
            bottom,
            gradient: {
                let (sin, cos) = look.random_range(0.0..std::f32::consts::PI).sin_cos();
                (cos, sin)
            },
            texture,
            shapes,
            ball,
        }
    }

    pub fn aspect(&self) -> f32 {
        self.aspect
    }

    /// The still part of the picture at a point; `pixel` is one pixel's size in picture
    /// units, used to soften edges.
    pub fn background(&self, x: f32, y: f32, pixel: f32) -> Rgb {
        let (cos, sin) = self.gradient;
        let along = ((x / self.aspect - 0.5) * cos + (y - 0.5) * sin + 0.5).clamp(0.0, 1.0);
        let mut colour = self
            .top
            .mix(self.bottom, along)
            .scale(self.texture_at(x, y));
        for shape in &self.shapes {
            let cover = coverage(shape.outline, x - shape.cx, y - shape.cy, pixel);
            if cover > 0.0 {
                colour = colour.mix(shape.colour, cover);
            }
        }
        colour
    }

    fn texture_at(&self, x: f32, y: f32) -> f32 {
        let wave = match self.texture {
            Texture::Stripes {
                direction: (cos, sin),
                frequency,
            } => (frequency * (x * cos + y * sin)).sin(),
            Texture::Checker { cell } => {
                let parity = ((x / cell).floor() + (y / cell).floor()) as i64 & 1;
                if parity == 0 { 0.7 } else { -0.7 }
            }
            Texture::Rings { cx, cy, frequency } => {
                (frequency * ((x - cx).powi(2) + (y - cy).powi(2)).sqrt()).sin()
            }
        };
        1.0 + 0.12 * wave
    }

    /// The ball at time `t` seconds.
    pub fn ball_at(&self, t: f32) -> BallAt {
        let ball = self.ball;
        let r = ball.radius;
        BallAt {
            x: bounce(ball.x0 + ball.vx * t, r, self.aspect - r),
            y: bounce(ball.y0 + ball.vy * t, r, 1.0 - r),
            radius: r,
            colour: ball.colour,
        }
    }

    /// The picture at time `t` as packed RGB, `width` x `height` pixels.
    pub fn render_rgb(&self, width: u32, height: u32, t: f32) -> Vec<u8> {
        let pixel = 1.0 / height as f32;
        let x_step = self.aspect / width as f32;
        let ball = self.ball_at(t);
        let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
        for row in 0..height {
            let y = (row as f32 + 0.5) * pixel;
            for col in 0..width {
                let x = (col as f32 + 0.5) * x_step;
                let colour = ball.over(self.background(x, y, pixel), x, y, pixel);
                rgb.extend_from_slice(&colour.to_bytes());
            }
        }
        rgb
    }
}

/// The ball where it is at one moment: worked out once for all the pixels drawn then.
#[derive(Clone, Copy, Debug)]
pub struct BallAt {
    x: f32,
    y: f32,
    radius: f32,
    colour: Rgb,
}

impl BallAt {
    /// `background` (the still picture at this point) with the ball drawn over it.
    pub fn over(&self, background: Rgb, x: f32, y: f32, pixel: f32) -> Rgb {
        let outline = Outline::Disc {
            radius: self.radius,
        };
        let cover = coverage(outline, x - self.x, y - self.y, pixel);
        if cover > 0.0 {
            background.mix(self.colour, cover)
        } else {
            background
        }
    }

    /// Everything the ball touches, soft edge included (with a pixel to spare).
    pub fn bounds(&self, pixel: f32) -> Bounds {
        let reach = self.radius + 2.0 * pixel;
        Bounds {
            left: self.x - reach,
            top: self.y - reach,
            right: self.x + reach,
            bottom: self.y + reach,
        }
    }
}

/// `value.round()`, exactly, without the call to the C library's `roundf` it compiles to:
/// the sandbox rounds every pixel of every picture it serves, and the call was a tenth of
/// encoding one. Values that are not small and positive (never a pixel's) go the long way.
pub fn round(value: f32) -> f32 {
    if !(0.0..8_388_608.0).contains(&value) {
        return value.round();
    }
    // Below 2^23 the whole part converts exactly and `value - whole` is exact.
    let whole = value as u32 as f32;
    if value - whole >= 0.5 {
        whole + 1.0
    } else {
        whole
    }
}

/// Folds a position into `lo..hi` as if it bounced off both ends.
fn bounce(position: f32, lo: f32, hi: f32) -> f32 {
    let span = (hi - lo).max(f32::EPSILON);
    let folded = (position - lo).rem_euclid(2.0 * span);
    lo + if folded > span {
        2.0 * span - folded
    } else {
        folded
    }
}

/// How much of a pixel at offset (`dx`, `dy`) from a shape's centre the shape covers, with a
/// one-pixel soft edge so shapes are not jagged at small sizes.
fn coverage(outline: Outline, dx: f32, dy: f32, pixel: f32) -> f32 {
    let inside = match outline {
        Outline::Disc { radius } => radius - (dx * dx + dy * dy).sqrt(),
        Outline::Rect { half_w, half_h } => (half_w - dx.abs()).min(half_h - dy.abs()),
        Outline::Diamond { radius } => {
            (radius - dx.abs() - dy.abs()) * std::f32::consts::FRAC_1_SQRT_2
        }
    };
    (inside / pixel + 0.5).clamp(0.0, 1.0)
}

fn random_texture(rng: &mut ChaCha8Rng, aspect: f32) -> Texture {
    match rng.random_range(0..3) {
        0 => Texture::Stripes {
            direction: {
                let (sin, cos) = rng.random_range(0.0..std::f32::consts::PI).sin_cos();
                (cos, sin)
            },
            frequency: rng.random_range(12.0..40.0),
        },
        1 => Texture::Checker {
            cell: rng.random_range(0.06..0.2),
        },
        _ => Texture::Rings {
            cx: rng.random_range(0.0..aspect),
            cy: rng.random(),
            frequency: rng.random_range(15.0..45.0),
        },
    }
}

/// A shape whose kind, size, place and colour follow the prompt (`look`), its place nudged by
/// the take (`take`).
fn random_shape(look: &mut ChaCha8Rng, take: &mut ChaCha8Rng, aspect: f32, hue: f32) -> Shape {
    let size = look.random_range(0.08..0.3);
    let outline = match look.random_range(0..3) {
        0 => Outline::Disc { radius: size },
        1 => Outline::Rect {
            half_w: size * look.random_range(0.6..1.6),
            half_h: size * look.random_range(0.4..1.2),
        },
        _ => Outline::Diamond { radius: size * 1.3 },
    };
    let cx = look.random_range(0.0..aspect) + take.random_range(-0.04..0.04);
    let cy = look.random_range(0.0..1.0) + take.random_range(-0.04..0.04);
    let colour = Rgb::from_hsv(
        hue + look.random_range(0.15..0.85),
        look.random_range(0.5..1.0),
        look.random_range(0.45..1.0),
    );
    Shape {
        outline,
        cx,
        cy,
        colour,
    }
}

fn random_ball(take: &mut ChaCha8Rng, aspect: f32, hue: f32) -> Ball {
    let speed = take.random_range(0.25..0.45);
    let heading = take.random_range(0.0..std::f32::consts::TAU);
    Ball {
        radius: 0.08,
        x0: take.random_range(0.0..aspect),
        y0: take.random(),
        vx: speed * heading.cos(),
        vy: speed * heading.sin(),
        // The complementary hue, bright, so the ball stands out on the prompt's palette.
        colour: Rgb::from_hsv(hue + 0.5, 0.35, 1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_matches_the_standard_library() {
        let awkward = [
            0.5,
            1.5,
            2.5,
            0.499_999_97,
            254.5,
            8_388_607.5,
            8_388_608.0,
            -0.5,
            -2.5,
        ];
        let sweep = (0..200_000).map(|i| i as f32 * 0.001_37);
        for value in awkward.into_iter().chain(sweep) {
            assert_eq!(round(value), value.round(), "{value}");
        }
        assert!(round(f32::NAN).is_nan());
    }

    #[test]
    fn bounce_stays_inside_and_reflects() {
        assert_eq!(bounce(0.5, 0.0, 1.0), 0.5);
        assert!((bounce(1.25, 0.0, 1.0) - 0.75).abs() < 1e-6);
        assert!((bounce(-0.25, 0.0, 1.0) - 0.25).abs() < 1e-6);
        for i in 0..1000 {
            let p = bounce(i as f32 * 0.37 - 100.0, 0.1, 0.9);
            assert!((0.1..=0.9).contains(&p), "{p}");
        }
    }
}
