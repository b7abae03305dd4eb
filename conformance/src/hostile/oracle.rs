//! What must exist after the run: the objects that were there before it, and those whose
//! creation the run saw answered OK. Anything else the endpoint lists leaked (a request
//! answered with an error, or never answered, left an object behind); anything the oracle
//! holds that is not listed was lost (a request that should have touched nothing removed it).

use std::collections::{BTreeMap, BTreeSet};

/// What the endpoint lists: pod IDs, container IDs (with their pod), image IDs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// ListPodSandbox, no filter.
    pub pods: BTreeSet<String>,
    /// ListContainers, no filter: container ID to pod ID.
    pub containers: BTreeMap<String, String>,
    /// ListImages, no filter.
    pub images: BTreeSet<String>,
}

/// Objects that should not exist, or should and do not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Difference {
    /// Listed, but no answer reported them created.
    pub leaked: Vec<String>,
    /// Reported created (or there before) and never removed, but not listed.
    pub lost: Vec<String>,
}

impl Difference {
    /// Nothing leaked, nothing lost.
    pub fn is_empty(&self) -> bool {
        self.leaked.is_empty() && self.lost.is_empty()
    }
}

/// The objects the run must find at its end.
#[derive(Debug, Clone, Default)]
pub struct Oracle {
    before: Listing,
    /// Pods created by an OK answer: ID to the request that created it.
    pods: BTreeMap<String, String>,
    /// Containers created by an OK answer: ID to (pod ID, request).
    containers: BTreeMap<String, (String, String)>,
    /// Pods and containers created over the run, removed ones included.
    ever: (usize, usize),
}

impl Oracle {
    /// Starts from what the endpoint listed before the run.
    pub fn new(before: Listing) -> Oracle {
        Oracle {
            before,
            ..Oracle::default()
        }
    }

    /// A RunPodSandbox answered OK with `id`.
    pub fn pod_created(&mut self, id: &str, by: &str) {
        if self.pods.insert(id.to_owned(), by.to_owned()).is_none() {
            self.ever.0 += 1;
        }
    }

    /// A CreateContainer in `pod` answered OK with `id`.
    pub fn container_created(&mut self, id: &str, pod: &str, by: &str) {
        if self
            .containers
            .insert(id.to_owned(), (pod.to_owned(), by.to_owned()))
            .is_none()
        {
            self.ever.1 += 1;
        }
    }

    /// The run removed a pod it created (with its containers).
    pub fn pod_removed(&mut self, id: &str) {
        self.pods.remove(id);
        self.containers.retain(|_, (pod, _)| pod != id);
    }

    /// The run removed a container it created.
    pub fn container_removed(&mut self, id: &str) {
        self.containers.remove(id);
    }

    /// The pods the run created and still holds, in creation-ID order.
    pub fn pods(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    /// The containers the run created and still holds.
    pub fn containers(&self) -> Vec<String> {
        self.containers.keys().cloned().collect()
    }

    /// How many objects the run created and still holds.
    pub fn created(&self) -> usize {
        self.pods.len() + self.containers.len()
    }

    /// Pods and containers created over the run, those it removed included.
    pub fn ever_created(&self) -> (usize, usize) {
        self.ever
    }

    /// Compares what the endpoint lists now with what must exist.
    pub fn compare(&self, now: &Listing) -> Difference {
        let mut d = Difference::default();
        let want_pods: BTreeSet<&String> =
            self.before.pods.iter().chain(self.pods.keys()).collect();
        let want_containers: BTreeSet<&String> = self
            .before
            .containers
            .keys()
            .chain(self.containers.keys())
            .collect();
        for p in &now.pods {
            if !want_pods.contains(p) {
                d.leaked.push(format!("pod {p}"));
            }
        }
        for p in want_pods {
            if !now.pods.contains(p) {
                d.lost.push(format!("pod {p}"));
            }
        }
        for c in now.containers.keys() {
            if !want_containers.contains(c) {
                d.leaked.push(format!("container {c}"));
            }
        }
        for c in want_containers {
            if !now.containers.contains_key(c) {
                d.lost.push(format!("container {c}"));
            }
        }
        for i in now.images.difference(&self.before.images) {
            d.leaked.push(format!("image {i}"));
        }
        for i in self.before.images.difference(&now.images) {
            d.lost.push(format!("image {i}"));
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(pods: &[&str], containers: &[(&str, &str)], images: &[&str]) -> Listing {
        Listing {
            pods: pods.iter().map(|s| (*s).to_owned()).collect(),
            containers: containers
                .iter()
                .map(|(c, p)| ((*c).to_owned(), (*p).to_owned()))
                .collect(),
            images: images.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn created_and_earlier_objects_are_expected() {
        let mut o = Oracle::new(listing(&["old"], &[("oc", "old")], &["img"]));
        o.pod_created("p1", "RunPodSandbox");
        o.container_created("c1", "p1", "CreateContainer");
        let now = listing(&["old", "p1"], &[("oc", "old"), ("c1", "p1")], &["img"]);
        assert!(o.compare(&now).is_empty());
        assert_eq!(o.created(), 2);
    }

    #[test]
    fn unreported_objects_leak_and_missing_ones_are_lost() {
        let mut o = Oracle::new(listing(&["old"], &[], &["img"]));
        o.pod_created("p1", "RunPodSandbox");
        let now = listing(&["p1", "ghost"], &[("c9", "p1")], &["img", "new"]);
        let d = o.compare(&now);
        assert_eq!(d.leaked, ["pod ghost", "container c9", "image new"]);
        assert_eq!(d.lost, ["pod old"]);
    }

    #[test]
    fn removing_a_pod_forgets_its_containers() {
        let mut o = Oracle::new(Listing::default());
        o.pod_created("p1", "a");
        o.container_created("c1", "p1", "b");
        o.container_created("c2", "p2", "b");
        o.pod_removed("p1");
        assert_eq!(o.containers(), ["c2"]);
        o.container_removed("c2");
        assert_eq!(o.created(), 0);
        assert_eq!(o.ever_created(), (1, 2));
        assert!(o.compare(&Listing::default()).is_empty());
    }
}
