//! The one policy for a poisoned lock: a thread that panicked while holding
//! a `std::sync::Mutex` is a bug, logged at error level with the guarded
//! type's name; the lock is cleared and the data used as that thread left
//! it, rather than every later caller failing or, worse, silently skipping
//! its work (a scheduler that stops relaying, a hub that stops storing).

use std::sync::{Mutex, MutexGuard};

/// [`Mutex::lock`] under the policy above.
pub trait Locked<T> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        match self.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                tracing::error!(
                    guarding = std::any::type_name::<T>(),
                    "a thread panicked while holding this lock; carrying on with the data as it left it"
                );
                self.clear_poison();
                poisoned.into_inner()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_recovered_with_its_data() {
        let m = std::sync::Arc::new(Mutex::new(vec![1, 2]));
        let m2 = m.clone();
        let panicked = std::thread::spawn(move || {
            let mut g = m2.lock().unwrap_or_else(|p| p.into_inner());
            g.push(3);
            panic!("holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(m.is_poisoned());
        assert_eq!(*m.locked(), vec![1, 2, 3]);
        assert!(!m.is_poisoned());
    }
}
