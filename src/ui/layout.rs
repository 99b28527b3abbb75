//! Where each part of the screen goes, from the terminal size alone, so the state
//! (for scrolling by pages) and the renderer agree on the feed's size.

use ratatui::layout::Rect;

pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Density {
    /// Header, feed and one status line; no borders.
    Compact,
    /// Two header rows, a bordered feed, the visualizer and two status rows.
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub density: Density,
    pub header: Rect,
    /// The load progress panel, while loading.
    pub progress: Option<Rect>,
    /// The feed's frame (equal to `feed` when compact).
    pub feed_frame: Rect,
    /// Where feed rows go.
    pub feed: Rect,
    pub visualizer: Option<Rect>,
    pub status: Rect,
}

pub fn too_small(area: Rect) -> bool {
    area.width < MIN_WIDTH || area.height < MIN_HEIGHT
}

/// `None` below the minimum size.
pub fn areas(area: Rect, loading: bool) -> Option<Areas> {
    if too_small(area) {
        return None;
    }
    let compact = area.height < 20 || area.width < 60;
    let density = if compact {
        Density::Compact
    } else {
        Density::Normal
    };
    let (header_h, status_h, progress_h) = if compact { (1, 1, 2) } else { (2, 2, 5) };
    // Rows per speaker in the visualizer: none in the smallest compact screens.
    let vis_rows = match density {
        Density::Compact if area.height >= 16 => 1,
        Density::Compact => 0,
        Density::Normal => ((area.height - 20) / 8 + 1).min(4),
    };
    let vis_h = vis_rows * 2;
    let progress_h = if loading { progress_h } else { 0 };

    let mut y = area.y;
    let mut take = |h: u16| {
        let r = Rect::new(area.x, y, area.width, h);
        y += h;
        r
    };
    let header = take(header_h);
    let progress = take(progress_h);
    let feed_h = area.height - header_h - progress_h - vis_h - status_h;
    let feed_frame = take(feed_h);
    let visualizer = take(vis_h);
    let status = take(status_h);
    let feed = match density {
        Density::Compact => feed_frame,
        Density::Normal => Rect::new(
            feed_frame.x + 1,
            feed_frame.y + 1,
            feed_frame.width.saturating_sub(2),
            feed_frame.height.saturating_sub(2),
        ),
    };
    Some(Areas {
        density,
        header,
        progress: loading.then_some(progress),
        feed_frame,
        feed,
        visualizer: (vis_h > 0).then_some(visualizer),
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_from_the_minimum_to_300x100_fits() {
        for w in MIN_WIDTH..=300 {
            for h in MIN_HEIGHT..=100 {
                for loading in [false, true] {
                    let area = Rect::new(0, 0, w, h);
                    let a = areas(area, loading).unwrap();
                    assert!(a.feed.height >= 3, "{w}x{h}: feed too short");
                    assert_eq!(a.status.bottom(), h, "{w}x{h}: status at the bottom");
                    for r in [a.header, a.feed_frame, a.status] {
                        assert!(
                            area.contains(r.as_position()) && r.right() <= w && r.bottom() <= h
                        );
                    }
                }
            }
        }
        assert!(areas(Rect::new(0, 0, 39, 30), false).is_none());
        assert!(areas(Rect::new(0, 0, 80, 11), false).is_none());
        let compact = areas(Rect::new(0, 0, 40, 12), false).unwrap();
        assert_eq!(
            (
                compact.header.height,
                compact.feed.height,
                compact.status.height
            ),
            (1, 10, 1)
        );
        assert!(compact.visualizer.is_none());
    }
}
