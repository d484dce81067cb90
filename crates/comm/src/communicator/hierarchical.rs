//! Hierarchical AllReduce, for jobs over several hosts: every host
//! reduces to its leader (its lowest rank) over shared memory, the leaders
//! run a Ring among themselves over the network, and every leader
//! broadcasts the result to its host. Only leaders cross the network, so
//! each host's data crosses it once instead of once per rank.

use super::*;

impl Communicator {
    /// See the [module docs](self). The leader folds its host's buffers in
    /// rank order, so every rank ends with the same bits.
    pub(super) fn hierarchical_all_reduce<T: Element>(
        &mut self,
        buf: &mut [T],
        op: ReduceOp,
    ) -> Result<(), CommError> {
        let hosts = self.hosts();
        let Some(host) = hosts.iter().find(|h| h.contains(&self.rank)).cloned() else {
            return Err(CommError::BadArgument(format!(
                "rank {} is on no host",
                self.rank
            )));
        };
        let leader = host[0];
        let leaders: Vec<usize> = hosts.iter().map(|h| h[0]).collect();
        let at = |step, peer| At {
            op: "all_reduce",
            algo: "hierarchical",
            step,
            peer,
        };
        if self.rank != leader {
            self.send_to(at(0, leader), bytemuck::cast_slice(&*buf))?;
            return self.recv_from(at(2, leader), Sink::copy(buf));
        }
        let mut part = buf.to_vec();
        for &member in &host[1..] {
            self.recv_from(at(0, member), Sink::copy(&mut part))?;
            op.apply(buf, &part);
        }
        let h = leaders.len();
        if h > 1 {
            let len = buf.len();
            let chunk = |c: usize| (c * len / h)..((c + 1) * len / h);
            let (_, me) = self.position_in(&leaders)?;
            self.ring_reduce_scatter(buf, &chunk, op, "all_reduce", &leaders)?;
            self.ring_gather(buf, &chunk, (me + 1) % h, "all_reduce", h - 1, &leaders)?;
        }
        for &member in &host[1..] {
            self.send_to(at(2, member), bytemuck::cast_slice(&*buf))?;
        }
        Ok(())
    }
}
