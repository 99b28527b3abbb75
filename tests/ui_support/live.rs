//! A `TestBackend` whose size the test can change while the main loop runs on
//! another thread, and whose latest screen the test can read.

use ratatui::backend::{Backend, ClearType, TestBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Shared {
    pub size: (u16, u16),
    /// The screen after the last flush, as rows of text.
    pub screen: Vec<String>,
    pub flushes: u64,
}

pub struct LiveBackend {
    inner: TestBackend,
    shared: Arc<Mutex<Shared>>,
}

impl LiveBackend {
    pub fn new(w: u16, h: u16) -> (Self, Arc<Mutex<Shared>>) {
        let shared = Arc::new(Mutex::new(Shared {
            size: (w, h),
            ..Default::default()
        }));
        (
            Self {
                inner: TestBackend::new(w, h),
                shared: shared.clone(),
            },
            shared,
        )
    }

    fn follow_size(&mut self) {
        let (w, h) = self.shared.lock().unwrap().size;
        let s = self.inner.size().unwrap();
        if (s.width, s.height) != (w, h) {
            self.inner.resize(w, h);
        }
    }
}

impl Backend for LiveBackend {
    type Error = std::convert::Infallible;

    fn draw<'a, I: Iterator<Item = (u16, u16, &'a Cell)>>(
        &mut self,
        content: I,
    ) -> Result<(), Self::Error> {
        self.follow_size();
        let s = self.inner.size().unwrap();
        // A real terminal ignores writes past its edge; so does this one.
        self.inner
            .draw(content.filter(|(x, y, _)| *x < s.width && *y < s.height))
    }
    fn hide_cursor(&mut self) -> Result<(), Self::Error> {
        self.inner.hide_cursor()
    }
    fn show_cursor(&mut self) -> Result<(), Self::Error> {
        self.inner.show_cursor()
    }
    fn get_cursor_position(&mut self) -> Result<Position, Self::Error> {
        self.inner.get_cursor_position()
    }
    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> Result<(), Self::Error> {
        self.inner.set_cursor_position(position)
    }
    fn clear(&mut self) -> Result<(), Self::Error> {
        self.follow_size();
        self.inner.clear()
    }
    fn clear_region(&mut self, clear_type: ClearType) -> Result<(), Self::Error> {
        self.inner.clear_region(clear_type)
    }
    fn size(&self) -> Result<Size, Self::Error> {
        let (w, h) = self.shared.lock().unwrap().size;
        Ok(Size::new(w, h))
    }
    fn window_size(&mut self) -> Result<WindowSize, Self::Error> {
        self.follow_size();
        self.inner.window_size()
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        let mut sh = self.shared.lock().unwrap();
        sh.screen = super::rows(self.inner.buffer());
        sh.flushes += 1;
        Ok(())
    }
}
