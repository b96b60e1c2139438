// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IPocMarketplace} from "./IPocMarketplace.sol";

/// @title IRoundVerifier
/// @notice Checks a proof that a round's posted results (outlier flags and scores) were computed
/// correctly from the trainers' committed features. A project that sets a verifier address has every
/// round result checked by it before anything is credited.
/// @dev Implementations adapt a concrete proof system (for example an ezkl-generated Halo2 verifier)
/// to this call: they rebuild the proof's public instances from `post` and `submissionsDigest` and
/// return whether the proof verifies. They must be view functions and must not revert on bad proofs
/// (the marketplace treats a revert, or any answer other than an ABI-encoded `true`, as `false`).
interface IRoundVerifier {
    /// @notice Verifies the proof for one round's results.
    /// @param projectId The project the round belongs to.
    /// @param round The round number (0-based).
    /// @param submissionsDigest The marketplace's hash chain over the round's submissions, in order.
    /// @param post The results being posted, including every submission's commitments.
    /// @param proof The proof bytes supplied by the aggregator.
    /// @return ok True when the proof is valid for exactly these inputs.
    function verifyRound(
        uint256 projectId,
        uint32 round,
        bytes32 submissionsDigest,
        IPocMarketplace.RoundPost calldata post,
        bytes calldata proof
    ) external view returns (bool ok);
}
